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
        let signature = &h.signature;
        let names = h.accepted_names().into_iter().map(|name| {
            let bytes = syn::LitByteStr::new(name.as_bytes(), h.wire_span);
            quote! { #bytes }
        });
        let fields: Vec<_> = h.args.iter().map(|a| &a.name).collect();
        let reads = h.args.iter().map(|a| {
            let (name, ty) = (&a.name, &a.ty);
            let text = name.to_string();
            quote! {
                let #name: #ty = match __statefn_reader.arg() {
                    ::std::result::Result::Ok(value) => value,
                    ::std::result::Result::Err(e) => {
                        return ::std::result::Result::Err(__statefn_reader.bad_arg(#i, #text, e));
                    }
                };
            }
        });
        quote! {
            #(#names)|* => {
                if __statefn_reader.fingerprint()
                    != const { ::statefn::__private::fingerprint(#signature) }
                {
                    return ::std::result::Result::Err(__statefn_reader.arguments_changed(#i));
                }
                #(#reads)*
                if !__statefn_reader.is_done() {
                    return ::std::result::Result::Err(__statefn_reader.trailing(#i));
                }
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

            #[allow(unused_mut)]
            fn decode(
                __statefn_bytes: &[u8],
            ) -> ::std::result::Result<Self, ::statefn::MessageError> {
                type __StatefnReader<'b> = ::statefn::__private::Reader<'b, #self_ty>;
                let ::std::option::Option::Some(mut __statefn_reader) =
                    __StatefnReader::new(__statefn_bytes)
                else {
                    return ::std::result::Result::Err(__StatefnReader::malformed_header(
                        __statefn_bytes,
                    ));
                };
                match __statefn_reader.name() {
                    #(#decode_arms)*
                    _ => ::std::result::Result::Err(__statefn_reader.unknown_handler()),
                }
            }
        }
    }
}
