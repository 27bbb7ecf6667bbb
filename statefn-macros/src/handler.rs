//! One handler: a `pub` method of the annotated impl block, parsed and checked.

use heck::ToUpperCamelCase;
use proc_macro2::{Ident, Span};
use syn::{
    Attribute, FnArg, GenericArgument, ImplItemFn, Pat, PathArguments, ReturnType, Type,
    Visibility, spanned::Spanned,
};

/// Names that `Handle<T>` or `Clone` already use: a handler with one of them
/// could not be called through a handle.
const RESERVED: &[&str] = &["id", "address", "clone"];

/// How the handler borrows the state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `&self`: read-only, the state is not written back.
    Read,
    /// `&mut self`: may change the state.
    Write,
}

/// How the handler sees the runtime context.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextArg {
    None,
    Shared,
    Mutable,
}

pub(crate) struct Arg {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

pub(crate) struct Handler {
    pub(crate) method: Ident,
    pub(crate) variant: Ident,
    pub(crate) access: Access,
    pub(crate) context: ContextArg,
    pub(crate) args: Vec<Arg>,
    /// The declared return type (`()` when none): the typed reply.
    pub(crate) reply: Type,
    /// Whether the return type is `Result<T, E>`: an `Err` discards the invocation's effects.
    pub(crate) fallible: bool,
    /// `T` and `E` of a fallible handler's `Result<T, E>`.
    pub(crate) result_types: Option<(Type, Type)>,
    pub(crate) docs: Vec<Attribute>,
}

impl Handler {
    /// Returns `Ok(None)` for methods that are not handlers (not `pub`, or no
    /// `self` receiver): they stay ordinary helpers.
    pub(crate) fn parse(method: &ImplItemFn) -> syn::Result<Option<Handler>> {
        let sig = &method.sig;
        let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
            return Ok(None);
        };
        if !matches!(method.vis, Visibility::Public(_)) {
            return Ok(None);
        }
        if let Some(asyncness) = &sig.asyncness {
            return Err(syn::Error::new_spanned(
                asyncness,
                "handlers cannot be `async`: they run on a shard's worker thread and must not \
                 wait; to talk to another function, send it a message with `ctx.send` or ask it \
                 with `ctx.request`, and handle its reply in another handler",
            ));
        }
        if !sig.generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                &sig.generics,
                "handlers cannot be generic: their arguments are stored and sent as a message \
                 of one concrete type",
            ));
        }
        let access = match (
            &receiver.reference,
            &receiver.mutability,
            receiver.colon_token,
        ) {
            (Some(_), Some(_), None) => Access::Write,
            (Some(_), None, None) => Access::Read,
            _ => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "a handler takes `&self` (read-only) or `&mut self` (may change the state); \
                     it cannot take `self` by value, since the state lives on after the call",
                ));
            }
        };
        let mut context = ContextArg::None;
        let mut args = Vec::new();
        for (position, input) in sig.inputs.iter().skip(1).enumerate() {
            let FnArg::Typed(typed) = input else { continue };
            if let Some(kind) = context_kind(&typed.ty) {
                if position != 0 {
                    return Err(syn::Error::new_spanned(
                        &typed.ty,
                        "the `Context` argument must come first, right after `self`",
                    ));
                }
                context = kind;
                continue;
            }
            if let Type::Reference(reference) = &*typed.ty {
                return Err(syn::Error::new_spanned(
                    reference,
                    "handler arguments must be owned values (they are deserialized from the \
                     message): take `String` instead of `&str`, `Vec<T>` instead of `&[T]`",
                ));
            }
            let Pat::Ident(pat) = &*typed.pat else {
                return Err(syn::Error::new_spanned(
                    &typed.pat,
                    "handler arguments need a plain name: it becomes the message's field name \
                     (for example `amount: i64`, sent as `{\"amount\": 5}`)",
                ));
            };
            args.push(Arg {
                name: pat.ident.clone(),
                ty: (*typed.ty).clone(),
            });
        }
        let method_name = sig.ident.to_string();
        if RESERVED.contains(&method_name.as_str()) {
            return Err(syn::Error::new_spanned(
                &sig.ident,
                format!(
                    "`{method_name}` cannot be a handler name: `Handle<T>` already has a method \
                     of that name; rename the handler (reserved: {})",
                    RESERVED.join(", ")
                ),
            ));
        }
        let (reply, result_types) = match &sig.output {
            ReturnType::Default => (syn::parse_quote!(()), None),
            ReturnType::Type(_, ty) => ((**ty).clone(), result_args(ty)),
        };
        let fallible = result_types.is_some();
        let variant = Ident::new(
            &method_name.trim_start_matches("r#").to_upper_camel_case(),
            sig.ident.span(),
        );
        Ok(Some(Handler {
            method: sig.ident.clone(),
            variant,
            access,
            context,
            args,
            reply,
            fallible,
            result_types,
            docs: method
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("doc"))
                .cloned()
                .collect(),
        }))
    }

    /// The handler's name on the wire and in URLs.
    pub(crate) fn wire_name(&self) -> String {
        self.method.to_string().trim_start_matches("r#").to_owned()
    }

    pub(crate) fn span(&self) -> Span {
        self.method.span()
    }
}

/// `&Context` / `&mut Context` (any path ending in `Context`).
fn context_kind(ty: &Type) -> Option<ContextArg> {
    let Type::Reference(reference) = ty else {
        return None;
    };
    let Type::Path(path) = &*reference.elem else {
        return None;
    };
    let last = path.path.segments.last()?;
    (last.ident == "Context" && last.arguments.is_empty()).then_some(
        if reference.mutability.is_some() {
            ContextArg::Mutable
        } else {
            ContextArg::Shared
        },
    )
}

/// `Result<T, E>` written with two type arguments. Aliases such as
/// `io::Result<T>` are taken as plain replies: an `Err` inside them is then
/// committed like any other value, which the docs say.
fn result_args(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    if last.ident != "Result" {
        return None;
    }
    let mut types = generics.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(ok), Some(err), None) => Some((ok, err)),
        _ => None,
    }
}

/// Checks that no two handlers share a message variant name.
pub(crate) fn check_unique(handlers: &[Handler]) -> syn::Result<()> {
    for (i, handler) in handlers.iter().enumerate() {
        if let Some(first) = handlers[..i].iter().find(|h| h.variant == handler.variant) {
            return Err(syn::Error::new(
                handler.method.span(),
                format!(
                    "handlers `{}` and `{}` both become the message variant `{}`: rename one of them",
                    first.method, handler.method, handler.variant
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn type_span(ty: &Type) -> Span {
    ty.span()
}
