//! `#[handler]` and its options: `internal`, `name = "..."`,
//! `renamed_from = "..."`.

use syn::{Attribute, LitStr, Meta, meta::ParseNestedMeta};

/// The longest handler name (its length is one byte on the wire; keep in
/// step with `statefn::MAX_HANDLER_NAME`).
const MAX_NAME: usize = 128;

/// What `#[handler(...)]` says about one method.
#[derive(Default)]
pub(crate) struct HandlerOptions {
    /// Refused by callers by name (HTTP, `Runtime::call_json`).
    pub(crate) internal: bool,
    /// The name on the wire and in URLs, instead of the method's.
    pub(crate) name: Option<LitStr>,
    /// Earlier names whose stored messages this handler takes.
    pub(crate) renamed_from: Vec<LitStr>,
}

/// Whether an attribute is `#[handler]` (also written `#[statefn::handler]`).
pub(crate) fn is_handler(attr: &Attribute) -> bool {
    let segments: Vec<String> = attr
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    matches!(
        segments.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["handler"] | ["statefn", "handler"]
    )
}

/// The method's `#[handler]` options, or `None` when it has no `#[handler]`
/// (a helper).
pub(crate) fn find(attrs: &[Attribute]) -> syn::Result<Option<HandlerOptions>> {
    let mut found: Option<HandlerOptions> = None;
    for attr in attrs.iter().filter(|a| is_handler(a)) {
        if found.is_some() {
            return Err(syn::Error::new_spanned(
                attr,
                "`#[handler]` is given twice on this method: put all options in one \
                 `#[handler(...)]`",
            ));
        }
        let mut options = HandlerOptions::default();
        match &attr.meta {
            Meta::Path(_) => {}
            Meta::List(_) => attr.parse_nested_meta(|meta| options.parse_one(&meta))?,
            Meta::NameValue(nv) => {
                return Err(syn::Error::new_spanned(
                    nv,
                    "write `#[handler]` or `#[handler(option, ...)]`",
                ));
            }
        }
        found = Some(options);
    }
    Ok(found)
}

impl HandlerOptions {
    fn parse_one(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("internal") {
            if self.internal {
                return Err(meta.error("`internal` is given twice"));
            }
            self.internal = true;
            Ok(())
        } else if meta.path.is_ident("name") {
            if self.name.is_some() {
                return Err(meta.error("`name` is given twice"));
            }
            let lit: LitStr = meta.value()?.parse()?;
            validate_name(&lit)?;
            self.name = Some(lit);
            Ok(())
        } else if meta.path.is_ident("renamed_from") {
            let lit: LitStr = meta.value()?.parse()?;
            validate_name(&lit)?;
            self.renamed_from.push(lit);
            Ok(())
        } else {
            Err(meta.error(
                "unknown option for #[handler]; the known options are `internal` (not callable \
                 by name over HTTP), `name = \"...\"` (its name on the wire and in URLs) and \
                 `renamed_from = \"old_name\"` (stored messages under the old name reach it)",
            ))
        }
    }
}

/// Handler names appear in URLs and in every stored message.
pub(crate) fn validate_name(lit: &LitStr) -> syn::Result<()> {
    check_name(&lit.value()).map_err(|reason| syn::Error::new_spanned(lit, reason))
}

/// Why `name` cannot be a handler's name.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "a handler name must be 1 to {MAX_NAME} characters of ASCII letters, digits, `_`, \
             `-` or `.` (it appears in URLs and in every stored message)"
        ))
    }
}
