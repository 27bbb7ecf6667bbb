//! Parsing the attribute's arguments: `#[stateful_function(name = "...")]`
//! on the struct, `#[stateful_function(message_derive(...))]` on the impl block.

use proc_macro2::TokenStream;
use syn::{LitInt, LitStr, Path, meta::ParseNestedMeta};

/// Options given on the struct.
#[derive(Default)]
pub(crate) struct FunctionArgs {
    /// The stable type name; the struct's name when not given.
    pub(crate) name: Option<LitStr>,
    /// The state's encoding version (default 1).
    pub(crate) version: Option<LitInt>,
    /// `fn(stored_version: u32, bytes: &[u8]) -> Result<Self, String>` for
    /// states stored by an older version.
    pub(crate) migrate: Option<Path>,
    /// Milliseconds without a state change after which an instance is removed.
    pub(crate) expire_after_ms: Option<u64>,
}

impl FunctionArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = FunctionArgs::default();
        let mut seen: Vec<String> = Vec::new();
        let parser = syn::meta::parser(|meta: ParseNestedMeta<'_>| {
            if let Some(key) = meta.path.get_ident().map(ToString::to_string) {
                if seen.contains(&key) {
                    return Err(meta.error(format!("`{key}` is given twice")));
                }
                seen.push(key);
            }
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                validate_name(&lit)?;
                args.name = Some(lit);
                Ok(())
            } else if meta.path.is_ident("version") {
                let lit: LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<u32>() {
                    Ok(v) if v >= 1 => {
                        args.version = Some(lit);
                        Ok(())
                    }
                    _ => Err(syn::Error::new_spanned(
                        lit,
                        "the state version is a whole number from 1 up (bump it when the struct changes)",
                    )),
                }
            } else if meta.path.is_ident("migrate") {
                args.migrate = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("expire_after") {
                let lit: LitStr = meta.value()?.parse()?;
                args.expire_after_ms = Some(parse_duration_ms(&lit)?);
                Ok(())
            } else if meta.path.is_ident("message_derive") {
                Err(meta.error(
                    "`message_derive(...)` goes on the impl block's #[stateful_function(...)]: \
                     the message enum is made from the handlers there",
                ))
            } else {
                Err(meta.error(
                    "unknown option for #[stateful_function]; the known options are \
                     `name = \"...\"`, `version = N`, `migrate = path::to::fn` and \
                     `expire_after = \"30d\"` (and, on the impl block, `message_derive(...)`)",
                ))
            }
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(args)
    }
}

/// `"500ms"`, `"30s"`, `"15m"`, `"12h"`, `"30d"` as milliseconds.
fn parse_duration_ms(lit: &LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && per_unit > 0 => n
            .checked_mul(per_unit)
            .ok_or_else(|| syn::Error::new_spanned(lit, "this duration is too long")),
        _ => Err(syn::Error::new_spanned(
            lit,
            "expected a duration such as \"500ms\", \"30s\", \"15m\", \"12h\" or \"30d\"",
        )),
    }
}

/// Type names appear in URLs and on disk: keep them to a safe alphabet.
fn validate_name(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(syn::Error::new_spanned(
            lit,
            "a stateful function name must be 1 to 128 characters of ASCII letters, digits, \
             `.`, `_` or `-` (it appears in URLs and on disk)",
        ))
    }
}

/// Options given on the impl block.
#[derive(Default)]
pub(crate) struct ImplArgs {
    /// `message_derive(Debug, Clone, PartialEq)`: derives for the generated
    /// message enum (it always derives serde's `Serialize` and `Deserialize`).
    pub(crate) message_derive: Vec<Path>,
}

impl ImplArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = ImplArgs::default();
        let mut given = false;
        let parser = syn::meta::parser(|meta: ParseNestedMeta<'_>| {
            if meta.path.is_ident("message_derive") {
                if given {
                    return Err(meta.error("`message_derive` is given twice"));
                }
                given = true;
                meta.parse_nested_meta(|derive| {
                    args.message_derive.push(derive.path);
                    Ok(())
                })
            } else if ["name", "version", "migrate", "expire_after"]
                .iter()
                .any(|key| meta.path.is_ident(key))
            {
                Err(meta.error(
                    "this option goes on the struct's #[stateful_function(...)], not on the \
                     impl block's",
                ))
            } else {
                Err(meta.error(
                    "unknown option for #[stateful_function] on an impl block; the only one \
                     is `message_derive(Debug, Clone, ...)` (derives for the message enum)",
                ))
            }
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(args)
    }
}
