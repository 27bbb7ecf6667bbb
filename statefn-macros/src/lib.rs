//! Procedural macros for [statefn](https://docs.rs/statefn).
//!
//! Use them through `statefn` (`use statefn::prelude::*;`), which re-exports
//! [`macro@stateful_function`] and documents the generated API. This crate only
//! turns Rust items into code; it knows nothing about storage or scheduling.

mod args;
mod callers;
mod handler;
mod handler_options;
mod helpers;
mod impl_block;
mod schema;
mod state_struct;
mod wire;

use proc_macro::TokenStream;
use syn::{Item, parse_macro_input};

/// Turns a struct into a stateful function type and its `impl` block into the
/// function's handlers.
///
/// Put it on both: on the struct (its fields are the persisted state of one
/// instance) and on its inherent `impl` block, where each method marked
/// [`#[handler]`](macro@handler) (taking `&self` or `&mut self`) is a handler;
/// the other methods, `pub` or not, are plain helpers. See the `statefn`
/// crate docs for the generated message enum, the typed client methods on
/// `Handle<T>` and the senders returned by `Context::send`.
///
/// Options on the struct:
///
/// - `name = "bank.Account"`: the stable type name (default: the struct's name);
/// - `version = N` and `migrate = path::to::fn`: the state's encoding version
///   and the function that reads states of older versions;
/// - `expire_after = "30d"`: instances idle that long are removed.
///
/// Options on the impl block:
///
/// - `message_derive(Debug, Clone, PartialEq)`: derives for the generated
///   message enum (`AccountMessage`), which always derives serde's
///   `Serialize` and `Deserialize`.
#[proc_macro_attribute]
pub fn stateful_function(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as Item);
    let expanded = match item {
        Item::Struct(s) => {
            args::FunctionArgs::parse(attr.into()).and_then(|args| state_struct::expand(args, s))
        }
        Item::Impl(i) => Ok(impl_block::expand(attr.into(), i)),
        other => Err(wrong_item(&other)),
    };
    expanded
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Marks a method of a `#[stateful_function]` impl block as a handler.
///
/// The method takes `&self` (read-only) or `&mut self`, optionally a
/// `&mut Context` (or `&Context`) next, then owned serde arguments; its
/// Rust visibility does not matter. Options:
///
/// - `#[handler(internal)]`: callable from other functions (`ctx.send`,
///   `ctx.request`, timers, reply targets), but not from outside: HTTP and
///   `Runtime::call_json` answer as if it did not exist (404
///   `unknown_handler`), and at compile time neither a `Handle`
///   (`handle.expire()`) nor a typed HTTP route
///   (`statefn::routes::<T>(id).expire().path()`) takes it. Trusted code
///   (a test of the handler, an operator's tool) calls it through
///   `handle.internal().expire()`.
/// - `#[handler(name = "deposit")]`: its name in URLs and stored messages,
///   instead of the method's (rename the method, keep the name).
/// - `#[handler(renamed_from = "old_name")]`: stored messages (timers,
///   messages in flight, dead letters) and reply routes written under the
///   old name reach this handler. May be given more than once.
///
/// Used anywhere else it is an error: the `#[stateful_function]` on the impl
/// block reads and removes it.
#[proc_macro_attribute]
pub fn handler(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "#[handler] marks a handler inside an impl block that carries #[stateful_function]: \
         put #[stateful_function] on the impl block (and on its struct)",
    )
    .into_compile_error();
    let item = proc_macro2::TokenStream::from(item);
    quote::quote! { #error #item }.into()
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
         state of one instance) and on that struct's `impl` block (its `#[handler]` methods are \
         the handlers)"
    )
}
