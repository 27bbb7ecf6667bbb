//! The message enum's binary form (`statefn::__private::WireMessage`): each
//! message names its handler and carries its argument fingerprint, so that a
//! stored message reaches the same handler after the handlers are reordered,
//! added to, removed or renamed (see `statefn`'s `wire` module for the bytes).

use proc_macro2::{Ident, TokenStream};
use quote::quote;
use syn::Type;

use crate::handler::Handler;

pub(crate) fn wire_impl(message: &Ident, self_ty: &Type, handlers: &[Handler]) -> TokenStream {
    let encode_arms = handlers.iter().map(|h| {
        let variant = &h.variant;
        let wire = &h.wire;
        let signature = &h.signature;
        let fields: Vec<_> = h.args.iter().map(|a| &a.name).collect();
        let field_names = h.args.iter().map(|a| a.name.to_string());
        quote! {
            #message::#variant { #(#fields),* } => {
                ::statefn::__private::write_header(
                    __statefn_out,
                    #wire,
                    const { ::statefn::__private::fingerprint(#signature) },
                );
                #(::statefn::__private::write_arg(__statefn_out, #fields, #wire, #field_names)?;)*
            }
        }
    });
    let decode_arms = handlers.iter().enumerate().map(|(i, h)| {
        let variant = &h.variant;
        let names = h.accepted_names().into_iter().map(|name| {
            let bytes = syn::LitByteStr::new(name.as_bytes(), h.wire_span);
            quote! { #bytes }
        });
        let fields: Vec<_> = h.args.iter().map(|a| &a.name).collect();
        let reads = h.args.iter().map(|a| {
            let (name, ty) = (&a.name, &a.ty);
            let text = name.to_string();
            quote! { let #name: #ty = __statefn_reader.arg(#i, #text)?; }
        });
        quote! {
            #(#names)|* => {
                __statefn_reader.check(#i)?;
                #(#reads)*
                __statefn_reader.finish(#i)?;
                ::std::result::Result::Ok(#message::#variant { #(#fields),* })
            }
        }
    });
    quote! {
        impl ::statefn::__private::WireMessage for #message {
            fn encode_into(
                &self,
                __statefn_out: &mut ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), ::statefn::Error> {
                match self {
                    #(#encode_arms)*
                }
                ::std::result::Result::Ok(())
            }

            fn decode(
                __statefn_bytes: &[u8],
            ) -> ::std::result::Result<Self, ::statefn::MessageError> {
                #[allow(unused_mut)]
                let mut __statefn_reader =
                    ::statefn::__private::Reader::<#self_ty>::new(__statefn_bytes)?;
                match __statefn_reader.name() {
                    #(#decode_arms)*
                    _ => ::std::result::Result::Err(__statefn_reader.unknown_handler()),
                }
            }
        }
    }
}
