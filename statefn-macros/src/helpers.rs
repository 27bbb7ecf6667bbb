//! Methods of the annotated impl block without `#[handler]` are helpers; a
//! call of one through a handle or a sender (`handle.audit()`) would
//! otherwise fail with rustc's "no method named `audit`", which never says
//! why. Each such helper gets a stub of its name on the generated client,
//! sender and requester that cannot be called: its bound is never met, and
//! the unmet bound's message (`statefn::__private::NotAHandler`) says to add
//! `#[handler]`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use syn::{FnArg, ImplItem, ItemImpl};

use crate::{handler_options, impl_block::Names};

/// Names a stub must not take: methods that statefn or derives call on the
/// generated types with method syntax, which an inherent stub would shadow.
const SKIPPED: &[&str] = &[
    "clone",
    "clone_from",
    "fmt",
    "raw",
    "from_raw",
    "to_owned",
    "deref",
    "eq",
    "ne",
    "hash",
    "into",
    "from",
];

pub(crate) fn stubs(names: &Names, item: &ItemImpl) -> TokenStream {
    let helpers: Vec<(Ident, usize)> = item
        .items
        .iter()
        .filter_map(|i| match i {
            ImplItem::Fn(method) => Some(method),
            _ => None,
        })
        .filter(|m| !m.attrs.iter().any(handler_options::is_handler))
        .filter(|m| matches!(m.sig.inputs.first(), Some(FnArg::Receiver(_))))
        .filter(|m| !SKIPPED.contains(&m.sig.ident.to_string().as_str()))
        .map(|m| (m.sig.ident.clone(), m.sig.inputs.len() - 1))
        .collect();
    if helpers.is_empty() {
        return quote! {};
    }
    let Names {
        client,
        sender,
        requester,
        ..
    } = names;
    let markers = helpers.iter().map(|(name, _)| {
        quote! {
            #[allow(non_camel_case_types, dead_code, unnameable_types)]
            pub struct #name;
        }
    });
    let methods: Vec<TokenStream> = helpers
        .iter()
        .map(|(name, arity)| {
            let generics: Vec<Ident> = (0..*arity).map(|i| format_ident!("__A{}", i)).collect();
            quote! {
                #[doc(hidden)]
                #[allow(clippy::unused_self, clippy::needless_pass_by_value)]
                pub fn #name<#(#generics),*>(&self, #(_: #generics),*) -> !
                where
                    for<'__statefn> #name: ::statefn::__private::NotAHandler,
                {
                    ::std::unreachable!()
                }
            }
        })
        .collect();
    quote! {
        const _: () = {
            #(#markers)*
            impl<Caller> #client<Caller> {
                #(#methods)*
            }
            impl<'c> #sender<'c> {
                #(#methods)*
            }
            impl<'c, Caller> #requester<'c, Caller> {
                #(#methods)*
            }
        };
    }
}
