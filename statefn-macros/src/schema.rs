//! `StatefulFunction::handler_schema`: per handler, the JSON Schemas of its
//! arguments, reply and error, for the ingress's OpenAPI document.
//!
//! Each type is asked for through `(&SchemaOf::<T>::new("T")).argument(..)`:
//! method lookup finds `ViaJsonSchema` when `T: schemars::JsonSchema` and
//! falls back to `ViaAnyValue` ("any JSON value") otherwise, so a function
//! whose types do not derive `JsonSchema` still compiles.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ExprLit, Lit, Meta, Type};

use crate::handler::{self, Handler};

/// The body of `handler_schema(handler, schemas)`.
pub(crate) fn handler_schema(handlers: &[Handler]) -> TokenStream {
    let arms = handlers.iter().enumerate().map(|(i, h)| {
        let description = doc_text(h);
        let args = h.args.iter().map(|a| {
            let name = a.name.to_string();
            let name = name.trim_start_matches("r#");
            let required = !is_option(&a.ty);
            let schema = schema_of(&a.ty, quote!(argument));
            quote! {
                ::statefn::__private::ArgSchema {
                    name: #name,
                    required: #required,
                    schema: #schema,
                }
            }
        });
        let (reply, error) = match &h.result_types {
            Some((ok, err)) => {
                let ok = schema_of(ok, quote!(reply));
                let err = schema_of(err, quote!(reply));
                (ok, quote! { ::std::option::Option::Some(#err) })
            }
            None => (
                schema_of(&h.reply, quote!(reply)),
                quote! { ::std::option::Option::None },
            ),
        };
        // Arguments are generated before the reply: their `$ref` names
        // are the plain ones when a type is both.
        quote! {
            #i => {
                let args = ::std::vec![#(#args),*];
                let reply = #reply;
                ::std::option::Option::Some(::statefn::__private::HandlerSchema {
                    description: #description,
                    args,
                    reply,
                    error: #error,
                })
            }
        }
    });
    quote! {
        #[allow(unused_imports, unused_variables, clippy::needless_borrow)]
        fn handler_schema(
            handler: usize,
            schemas: &mut ::statefn::__private::Schemas,
        ) -> ::std::option::Option<::statefn::__private::HandlerSchema> {
            use ::statefn::__private::{ViaAnyValue as _, ViaJsonSchema as _};
            match handler {
                #(#arms,)*
                _ => ::std::option::Option::None,
            }
        }
    }
}

/// `(&SchemaOf::<T>::new("T")).side(schemas)`.
fn schema_of(ty: &Type, side: TokenStream) -> TokenStream {
    let text = handler::type_text(ty);
    quote! {
        (&::statefn::__private::SchemaOf::<#ty>::new(#text)).#side(schemas)
    }
}

/// A type written `Option<..>` (any path ending in `Option`): serde reads
/// an absent field of it as `None`, so the body need not have it.
fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// The handler's doc comment, its lines joined as rustdoc shows them.
fn doc_text(h: &Handler) -> String {
    let lines: Vec<String> = h
        .docs
        .iter()
        .filter_map(|attr| match &attr.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').unwrap_or(&line).to_owned())
        .collect();
    lines.join("\n").trim().to_owned()
}
