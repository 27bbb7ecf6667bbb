//! `#[stateful_function]` on the impl block: the message enum, dispatch and
//! reply targets (the typed callers are in `callers`, the binary form in
//! `wire`).

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{FnArg, ImplItem, ItemImpl, Pat, Path, Stmt, Type};

use crate::{
    args::ImplArgs,
    handler::{self, Access, ContextArg, Handler},
    handler_options,
};

/// On an error, keeps the impl block as written (its methods stay callable,
/// without their `#[handler]` attributes) and marks the struct as having its
/// impl block, so that the only errors are the macro's own, not "no
/// handlers" or "no method" cascades.
pub(crate) fn expand(attr: TokenStream, item: ItemImpl) -> TokenStream {
    let plain = strip_handler_attributes(&item);
    ImplArgs::parse(attr)
        .and_then(|args| expand_handlers(&args, &item, &plain))
        .unwrap_or_else(|error| {
            let error = error.into_compile_error();
            let marker = (item.trait_.is_none()
                && item.generics.params.is_empty()
                && self_ident(&item.self_ty).is_ok())
            .then(|| handler_impl_marker(&item.self_ty));
            quote! {
                #error
                #plain
                #marker
            }
        })
}

/// The impl block without the `#[handler]` attributes, which only this
/// macro reads (left in place they would name an attribute that rejects
/// being used on its own).
fn strip_handler_attributes(item: &ItemImpl) -> ItemImpl {
    let mut plain = item.clone();
    for impl_item in &mut plain.items {
        if let ImplItem::Fn(method) = impl_item {
            method.attrs.retain(|a| !handler_options::is_handler(a));
        }
    }
    plain
}

/// Each handler's context argument, inside its body, wrapped in a
/// `HandlerContext` of `Self`: it dereferences to `Context`, and its
/// `request` knows the caller's type, so that a reply target of another
/// function type does not compile. Only for an argument bound to a plain
/// name (`ctx: &mut Context`); the signature stays as written.
fn with_handler_contexts(plain: &ItemImpl, item: &ItemImpl) -> ItemImpl {
    let mut plain = plain.clone();
    for (written, impl_item) in item.items.iter().zip(&mut plain.items) {
        let (ImplItem::Fn(written), ImplItem::Fn(method)) = (written, impl_item) else {
            continue;
        };
        if !written.attrs.iter().any(handler_options::is_handler) {
            continue;
        }
        let Some(FnArg::Typed(arg)) = method.sig.inputs.iter().nth(1) else {
            continue;
        };
        let (Some(_), Pat::Ident(name)) = (handler::context_kind(&arg.ty), &*arg.pat) else {
            continue;
        };
        if name.by_ref.is_some() || name.subpat.is_some() {
            continue;
        }
        let ident = &name.ident;
        let wrap: Stmt = syn::parse_quote! {
            #[allow(unused_variables)]
            let #ident = &mut ::statefn::__private::HandlerContext::<Self, _>::new(#ident);
        };
        method.block.stmts.insert(0, wrap);
    }
    plain
}

/// The impl the struct's `#[stateful_function]` checks for.
fn handler_impl_marker(self_ty: &Type) -> TokenStream {
    quote! {
        impl ::statefn::__private::HandlerImpl for #self_ty {}
    }
}

fn expand_handlers(args: &ImplArgs, item: &ItemImpl, plain: &ItemImpl) -> syn::Result<TokenStream> {
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "#[stateful_function] goes on the struct's inherent impl block (`impl Account { .. }`), \
             not on a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a stateful function cannot be generic: use a concrete struct",
        ));
    }
    let self_ident = self_ident(&item.self_ty)?;
    let mut handlers = Vec::new();
    for impl_item in &item.items {
        if let ImplItem::Fn(method) = impl_item
            && let Some(h) = Handler::parse(method)?
        {
            handlers.push(h);
        }
    }
    handler::check_unique(&handlers)?;

    let self_ty = &item.self_ty;
    let names = Names::new(&self_ident);
    let message_enum = message_enum(&names, &self_ident, &handlers, &args.message_derive);
    let wire = crate::wire::wire_impl(&names.message, self_ty, &handlers);
    let function_impl = function_impl(&names, self_ty, &handlers);
    let client = crate::callers::client(&names, &self_ident);
    let markers = crate::callers::markers(&handlers);
    let client_methods = crate::callers::client_methods(&names, &handlers);
    let senders = crate::callers::senders(&names, &self_ident, &handlers);
    let (routes, route_methods) = crate::callers::routes(&names, &self_ident, self_ty, &handlers);
    let reply_refs = reply_refs(&names, self_ty, &handlers);
    let marker = handler_impl_marker(self_ty);
    let argument_checks = argument_checks(&handlers);
    let helper_stubs = crate::helpers::stubs(&names, item);

    let plain = with_handler_contexts(plain, item);
    Ok(quote! {
        #plain
        #marker
        #argument_checks
        #message_enum
        #wire
        #function_impl
        #client
        #senders
        #routes
        // The markers are named after the methods: kept in a block of their
        // own, where only the methods that name them see them.
        const _: () = {
            #markers
            #client_methods
            #route_methods
        };
        #reply_refs
        #helper_stubs
    })
}

/// The generated items' names, derived from the struct's.
pub(crate) struct Names {
    pub(crate) message: Ident,
    pub(crate) client: Ident,
    pub(crate) sender: Ident,
    pub(crate) requester: Ident,
    pub(crate) routes: Ident,
}

impl Names {
    fn new(ident: &Ident) -> Self {
        Names {
            message: format_ident!("{}Message", ident),
            client: format_ident!("{}Client", ident),
            sender: format_ident!("{}Sender", ident),
            requester: format_ident!("{}Requester", ident),
            routes: format_ident!("{}Routes", ident),
        }
    }
}

fn self_ident(ty: &Type) -> syn::Result<Ident> {
    if let Type::Path(path) = ty
        && path.qself.is_none()
        && let Some(last) = path.path.segments.last()
        && last.arguments.is_empty()
    {
        return Ok(last.ident.clone());
    }
    Err(syn::Error::new_spanned(
        ty,
        "#[stateful_function] expects `impl StructName { .. }` for a struct that also carries \
         #[stateful_function]",
    ))
}

fn message_enum(
    names: &Names,
    self_ident: &Ident,
    handlers: &[Handler],
    derives: &[Path],
) -> TokenStream {
    let message = &names.message;
    let doc = format!(
        "The messages [`{self_ident}`] accepts: one variant per handler, its arguments as \
         named fields. Generated by `#[stateful_function]`; serialized with serde as JSON \
         (`{{\"handler_name\": {{\"arg\": value}}}}`) and stored in the binary form of \
         `statefn::encode_message`, which names the handler."
    );
    let variants = handlers.iter().map(|h| {
        let variant = &h.variant;
        let wire = h.wire_name();
        let fields = h.args.iter().map(|a| {
            let (name, ty) = (&a.name, &a.ty);
            quote! { #name: #ty }
        });
        let variant_doc = format!("Arguments of [`{self_ident}::{}`].", h.method);
        quote! {
            #[doc = #variant_doc]
            #[serde(rename = #wire)]
            #variant { #(#fields),* }
        }
    });
    let derives = (!derives.is_empty()).then(|| quote! { #[derive(#(#derives),*)] });
    quote! {
        #[doc = #doc]
        #derives
        #[derive(::statefn::__private::serde::Serialize, ::statefn::__private::serde::Deserialize)]
        #[serde(crate = "::statefn::__private::serde", deny_unknown_fields)]
        #[allow(missing_docs)]
        pub enum #message {
            #(#variants),*
        }
    }
}

fn function_impl(names: &Names, self_ty: &Type, handlers: &[Handler]) -> TokenStream {
    let Names {
        message,
        routes,
        client,
        sender,
        requester,
        ..
    } = names;
    let infos = handlers.iter().map(|h| {
        let name = h.wire_name();
        let mutates = h.access == Access::Write;
        let fallible = h.fallible;
        let internal = h.internal;
        let args = h.args.iter().map(|a| a.name.to_string());
        let signature = &h.signature;
        let renamed_from = &h.renamed_from;
        quote! {
            ::statefn::HandlerInfo {
                name: #name,
                mutates: #mutates,
                fallible: #fallible,
                internal: #internal,
                args: &[#(#args),*],
                signature: #signature,
                fingerprint: ::statefn::__private::fingerprint(#signature),
                renamed_from: &[#(#renamed_from),*],
            }
        }
    });
    let index_arms = handlers.iter().enumerate().map(|(i, h)| {
        let variant = &h.variant;
        quote! { #message::#variant { .. } => #i }
    });
    let dispatch_arms = handlers.iter().map(|h| {
        let variant = &h.variant;
        let method = &h.method;
        let fields: Vec<_> = h.args.iter().map(|a| &a.name).collect();
        let ctx = match h.context {
            ContextArg::None => quote! {},
            ContextArg::Shared | ContextArg::Mutable => quote! { __statefn_ctx, },
        };
        let encode = if h.fallible {
            quote! { ::statefn::__private::Reply::from_result }
        } else {
            quote! { ::statefn::__private::Reply::from_value }
        };
        // Located at the user's tokens for errors, resolved at the call site
        // so that `self` and the macro's own locals are the ones in scope
        // (the method may come from a `macro_rules!`, whose hygiene differs).
        let call = quote_spanned! {h.span().resolved_at(Span::call_site())=>
            <#self_ty>::#method(self, #ctx #(#fields),*)
        };
        // Spanned on the return type: a reply that is not a serde type is
        // reported there, with `ReplyValue`'s message.
        let reply_span = handler::type_span(&h.reply).resolved_at(Span::call_site());
        let reply = quote_spanned! {reply_span=> &__statefn_reply };
        quote! {
            #message::#variant { #(#fields),* } => {
                let __statefn_reply = #call;
                #encode(#reply)
            }
        }
    });
    // Reply routes stored under a handler's earlier name reach it too.
    let reply_arms = handlers.iter().filter(|h| h.args.len() == 1).map(|h| {
        let variant = &h.variant;
        let names = h.accepted_names();
        let field = &h.args[0].name;
        quote! {
            #(#names)|* => ::std::result::Result::Ok(#message::#variant {
                #field: ::statefn::__private::decode_reply_arg::<Self, _>(handler, reply)?,
            })
        }
    });
    let json_arms = handlers
        .iter()
        .enumerate()
        .map(|(i, h)| match &h.result_types {
            Some((ok, err)) => quote! {
                #i => ::statefn::__private::json_result_reply::<Self, #ok, #err>(reply)
            },
            None => {
                let reply_ty = &h.reply;
                quote! { #i => ::statefn::__private::json_reply::<Self, #reply_ty>(reply) }
            }
        });
    let handler_schema = crate::schema::handler_schema(handlers);
    quote! {
        impl ::statefn::StatefulFunction for #self_ty {
            type Message = #message;
            type Client = #client;
            type InternalClient = #client<::statefn::__private::Trusted>;
            type Sender<'c> = #sender<'c>;
            type Requester<'c> = #requester<'c>;
            type CheckedRequester<'c, Caller: 'static> = #requester<'c, Caller>;
            type Routes = #routes;

            const HANDLERS: &'static [::statefn::HandlerInfo] = &[#(#infos),*];

            fn handler_index(message: &Self::Message) -> usize {
                match *message {
                    #(#index_arms,)*
                }
            }

            #[allow(unused_variables, clippy::let_unit_value)]
            fn dispatch(
                &mut self,
                __statefn_ctx: &mut ::statefn::Context,
                __statefn_message: Self::Message,
            ) -> ::statefn::__private::Reply {
                match __statefn_message {
                    #(#dispatch_arms,)*
                }
            }

            #[allow(unused_variables, unreachable_code)]
            fn reply_message(
                handler: &str,
                reply: &[u8],
            ) -> ::std::result::Result<Self::Message, ::statefn::Error> {
                match handler {
                    #(#reply_arms,)*
                    _ => ::std::result::Result::Err(
                        ::statefn::__private::not_a_reply_handler::<Self>(handler),
                    ),
                }
            }

            #[allow(unused_variables, unreachable_code)]
            fn reply_to_json(
                handler: usize,
                reply: &[u8],
            ) -> ::std::result::Result<::statefn::JsonReply, ::statefn::Error> {
                match handler {
                    #(#json_arms,)*
                    _ => ::std::result::Result::Err(
                        ::statefn::__private::no_such_handler_index::<Self>(handler),
                    ),
                }
            }

            #handler_schema
        }
    }
}

/// `CartMessage::reserved()`: a typed reference to a handler of one argument
/// (the reply) or two (a correlation value, then the reply), for
/// `Request::reply_to` and `Request::reply_to_with`.
fn reply_refs(names: &Names, self_ty: &Type, handlers: &[Handler]) -> TokenStream {
    let message = &names.message;
    let refs = handlers.iter().filter_map(|h| {
            let method = &h.method;
            let wire = h.wire_name();
            let (ty, doc) = match h.args.as_slice() {
                [reply] => {
                    let ty = &reply.ty;
                    (
                        quote! { ::statefn::HandlerRef<#self_ty, #ty> },
                        format!(
                            "The `{wire}` handler as a reply target: \
                             `ctx.request::<F>(id).call(..).reply_to({message}::{method}())`."
                        ),
                    )
                }
                [correlation, reply] => {
                    let (c, ty) = (&correlation.ty, &reply.ty);
                    (
                        quote! { ::statefn::HandlerRef<#self_ty, #ty, #c> },
                        format!(
                            "The `{wire}` handler as a reply target with a correlation value: \
                             `ctx.request::<F>(id).call(..).reply_to_with({message}::{method}(), value)`."
                        ),
                    )
                }
                _ => return None,
            };
            Some(quote! {
                #[doc = #doc]
                pub fn #method() -> #ty {
                    ::statefn::HandlerRef::new(#wire)
                }
            })
        });
    quote! {
        impl #message {
            #(#refs)*
        }
    }
}

/// A struct whose fields name each handler argument's type: checking it (which
/// the compiler does before it checks function bodies) reports a type that is
/// not a serde type with `MessageArgument`'s message, on the argument's type,
/// as the first error, ahead of those of serde's derive on the message enum.
fn argument_checks(handlers: &[Handler]) -> TokenStream {
    let checks = handlers.iter().flat_map(|h| &h.args).map(|a| {
        let ty = &a.ty;
        quote_spanned! {handler::type_span(ty)=>
            ::statefn::__private::CheckArgument<#ty>
        }
    });
    quote! {
        const _: () = {
            #[allow(dead_code)]
            struct __StatefnArguments(#(#checks),*);
        };
    }
}
