//! Procedural macros for [statefn](https://docs.rs/statefn).
//!
//! Use them through `statefn` (`use statefn::prelude::*;`), which re-exports
//! [`macro@stateful_function`] and documents the generated API. This crate only
//! turns Rust items into code; it knows nothing about storage or scheduling.

mod args;
mod handler;
mod impl_block;
mod state_struct;

use proc_macro::TokenStream;
use syn::{Item, parse_macro_input};

/// Turns a struct into a stateful function type and its `impl` block into the
/// function's handlers.
///
/// Put it on both: on the struct (its fields are the persisted state of one
/// instance) and on its inherent `impl` block (its `pub` methods taking
/// `&self` or `&mut self` are the handlers). See the `statefn` crate docs for
/// the generated message enum, the typed client methods on `Handle<T>` and the
/// senders returned by `Context::send`.
///
/// Options on the struct: `name = "bank.Account"` sets the stable type name
/// (default: the struct's name).
#[proc_macro_attribute]
pub fn stateful_function(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as Item);
    let expanded = match item {
        Item::Struct(s) => {
            args::FunctionArgs::parse(attr.into()).and_then(|args| state_struct::expand(args, s))
        }
        Item::Impl(i) => args::reject_impl_args(attr.into()).map(|()| impl_block::expand(i)),
        other => Err(wrong_item(&other)),
    };
    expanded
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The error for `#[stateful_function]` on anything but a struct or an impl block.
fn wrong_item(item: &Item) -> syn::Error {
    let kind = match item {
        Item::Enum(e) => return spanned(&e.enum_token, "an enum"),
        Item::Union(u) => return spanned(&u.union_token, "a union"),
        Item::Fn(f) => return spanned(&f.sig.fn_token, "a function"),
        Item::Trait(t) => return spanned(&t.trait_token, "a trait"),
        Item::Mod(m) => return spanned(&m.mod_token, "a module"),
        _ => "this item",
    };
    syn::Error::new(proc_macro2::Span::call_site(), message(kind))
}

fn spanned(tokens: &impl quote::ToTokens, kind: &str) -> syn::Error {
    syn::Error::new_spanned(tokens, message(kind))
}

fn message(kind: &str) -> String {
    format!(
        "#[stateful_function] cannot be used on {kind}: put it on a struct (its fields are the \
         state of one instance) and on that struct's `impl` block (its methods are the handlers)"
    )
}
