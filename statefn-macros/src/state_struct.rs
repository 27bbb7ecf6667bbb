//! `#[stateful_function]` on the state struct.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{ItemStruct, LitStr};

use crate::args::FunctionArgs;

pub(crate) fn expand(args: FunctionArgs, item: ItemStruct) -> syn::Result<TokenStream> {
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a stateful function cannot be generic: its state is stored under one type name, \
             so use a concrete struct (wrap generic logic in a helper type instead)",
        ));
    }
    let ident = &item.ident;
    let name = args
        .name
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    let version = args.version.map_or_else(|| quote! { 1 }, |v| quote! { #v });
    let expire = args.expire_after_ms.unwrap_or(0);
    let migrate = args.migrate.map(|path| {
        quote! {
            fn migrate(version: u32, bytes: &[u8]) -> ::std::result::Result<Self, ::std::string::String> {
                #path(version, bytes)
            }
        }
    });
    Ok(quote! {
        #item

        impl ::statefn::__private::FunctionState for #ident {
            const TYPE_NAME: &'static str = #name;
            const VERSION: u32 = #version;
            const EXPIRE_AFTER_MS: u64 = #expire;
            #migrate
        }

        // Fails to compile, with a message saying what to add, when the
        // struct's impl block lacks #[stateful_function].
        const _: () = {
            fn __statefn_requires_handlers<T: ::statefn::__private::HandlerImpl>() {}
            #[allow(dead_code)]
            fn __statefn_check() {
                __statefn_requires_handlers::<#ident>();
            }
        };
    })
}
