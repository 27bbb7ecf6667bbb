//! One handler: a `#[handler]` method of the annotated impl block, parsed
//! and checked.

use heck::ToUpperCamelCase;
use proc_macro2::{Delimiter, Ident, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{
    Attribute, FnArg, GenericArgument, ImplItemFn, LitStr, Pat, PathArguments, ReturnType, Type,
    spanned::Spanned,
};

use crate::handler_options::{self, HandlerOptions};

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
    /// `#[handler(internal)]`: refused by callers by name.
    pub(crate) internal: bool,
    /// The name on the wire, in stored messages and in URLs.
    pub(crate) wire: String,
    /// Where that name is written (the method's name, or `name = "..."`).
    pub(crate) wire_span: Span,
    /// `#[handler(renamed_from = "...")]`: earlier names.
    pub(crate) renamed_from: Vec<LitStr>,
    /// The arguments as written, `name:Type,...`: the fingerprint's input.
    pub(crate) signature: String,
}

impl Handler {
    /// Returns `Ok(None)` for methods without `#[handler]`: whatever their
    /// visibility or shape, they stay ordinary helpers.
    pub(crate) fn parse(method: &ImplItemFn) -> syn::Result<Option<Handler>> {
        let Some(options) = handler_options::find(&method.attrs)? else {
            return Ok(None);
        };
        let sig = &method.sig;
        let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
            return Err(syn::Error::new_spanned(
                &sig.ident,
                "a `#[handler]` takes `&self` (read-only) or `&mut self` (may change the \
                 state) as its first parameter; an associated function without `self` can only \
                 be a helper: remove `#[handler]`",
            ));
        };
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
            ReturnType::Type(_, ty) => ((**ty).clone(), result_args(ty)?),
        };
        let fallible = result_types.is_some();
        let unraw = method_name.trim_start_matches("r#").to_owned();
        let variant = Ident::new(&unraw.to_upper_camel_case(), sig.ident.span());
        let HandlerOptions {
            internal,
            name,
            renamed_from,
            ..
        } = options;
        let (wire, wire_span) = match name {
            Some(lit) => (lit.value(), lit.span()),
            None => {
                handler_options::check_name(&unraw)
                    .map_err(|reason| syn::Error::new_spanned(&sig.ident, reason))?;
                (unraw, sig.ident.span())
            }
        };
        let signature = args
            .iter()
            .map(|a| {
                let name = a.name.to_string();
                format!("{}:{}", name.trim_start_matches("r#"), type_text(&a.ty))
            })
            .collect::<Vec<_>>()
            .join(",");
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
            internal,
            wire,
            wire_span,
            renamed_from,
            signature,
        }))
    }

    /// The handler's name on the wire and in URLs.
    pub(crate) fn wire_name(&self) -> String {
        self.wire.clone()
    }

    /// Every name a stored message may carry for this handler: its own,
    /// then its `renamed_from` ones.
    pub(crate) fn accepted_names(&self) -> Vec<String> {
        std::iter::once(self.wire.clone())
            .chain(self.renamed_from.iter().map(LitStr::value))
            .collect()
    }

    pub(crate) fn span(&self) -> Span {
        self.method.span()
    }
}

/// `&Context` / `&mut Context` (any path ending in `Context`).
pub(crate) fn context_kind(ty: &Type) -> Option<ContextArg> {
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

/// `T` and `E` of a return type written `Result<T, E>` (any path ending in
/// `Result`, two type arguments): the handler is fallible. A `Result` with
/// another number of type arguments is an alias (`io::Result<T>`,
/// `crate::Result<T>`) whose error type the macro cannot see: refused, since
/// taken as a plain reply its `Err` would commit the invocation's effects.
fn result_args(ty: &Type) -> syn::Result<Option<(Type, Type)>> {
    let Type::Path(path) = ty else {
        return Ok(None);
    };
    let Some(last) = path.path.segments.last() else {
        return Ok(None);
    };
    if last.ident != "Result" {
        return Ok(None);
    }
    let types: Vec<Type> = match &last.arguments {
        PathArguments::AngleBracketed(generics) => generics
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    match <[Type; 2]>::try_from(types) {
        Ok([ok, err]) => Ok(Some((ok, err))),
        Err(_) => Err(syn::Error::new_spanned(
            ty,
            "write the handler's return type as `Result<T, E>` in full (for example \
             `std::result::Result<T, MyError>`): the macro cannot see through a `Result` alias, \
             and a handler must be known to be fallible for its `Err` to discard the \
             invocation's state change and messages",
        )),
    }
}

/// Checks that no two handlers share a message variant or a name on the
/// wire, and that no earlier name (`renamed_from`) is a current one or is
/// claimed twice: a stored message must name exactly one handler.
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
        if let Some(first) = handlers[..i].iter().find(|h| h.wire == handler.wire) {
            return Err(syn::Error::new(
                handler.wire_span,
                format!(
                    "handlers `{}` and `{}` both have the name `{}` (in URLs and stored \
                     messages): give one of them another `#[handler(name = \"...\")]`",
                    first.method, handler.method, handler.wire
                ),
            ));
        }
    }
    for (i, handler) in handlers.iter().enumerate() {
        for (j, old) in handler.renamed_from.iter().enumerate() {
            let old_name = old.value();
            if let Some(owner) = handlers.iter().find(|h| h.wire == old_name) {
                let whose = if owner.method == handler.method {
                    "its own name".to_owned()
                } else {
                    format!("the name of handler `{}`", owner.method)
                };
                return Err(syn::Error::new_spanned(
                    old,
                    format!(
                        "`renamed_from = \"{old_name}\"` is {whose}: stored messages named \
                         `{old_name}` go to that handler; `renamed_from` takes a name no \
                         handler has any more"
                    ),
                ));
            }
            let earlier = handlers[..i]
                .iter()
                .find(|h| h.renamed_from.iter().any(|o| o.value() == old_name))
                .map(|h| h.method.to_string())
                .or_else(|| {
                    handler.renamed_from[..j]
                        .iter()
                        .any(|o| o.value() == old_name)
                        .then(|| handler.method.to_string())
                });
            if let Some(earlier) = earlier {
                return Err(syn::Error::new_spanned(
                    old,
                    format!(
                        "`renamed_from = \"{old_name}\"` is also given on handler `{earlier}`: \
                         a stored message named `{old_name}` must go to exactly one handler"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A type as written, without whitespace (a space only between two words):
/// the same text whatever the formatting, for the argument fingerprint.
pub(crate) fn type_text(ty: &Type) -> String {
    let mut out = String::new();
    push_tokens(&mut out, ty.to_token_stream());
    out
}

fn push_tokens(out: &mut String, tokens: TokenStream) {
    for token in tokens {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                push_tokens(out, group.stream());
                out.push_str(close);
            }
            TokenTree::Ident(ident) => {
                push_word(out, &ident.to_string());
            }
            TokenTree::Literal(literal) => push_word(out, &literal.to_string()),
            TokenTree::Punct(punct) => out.push(punct.as_char()),
        }
    }
}

/// Appends a word, with a space if it follows another word.
fn push_word(out: &mut String, word: &str) {
    if out
        .chars()
        .last()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
    {
        out.push(' ');
    }
    out.push_str(word);
}

pub(crate) fn type_span(ty: &Type) -> Span {
    ty.span()
}
