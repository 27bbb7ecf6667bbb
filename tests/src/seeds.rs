//! Seeds for randomised crash tests: a comma list from an environment
//! variable (decimal or `0x` hex), so a failing run can be replayed, or the
//! test's default list (what CI runs).

/// The seeds in `$list_var` (or, for older scripts, the single seed in
/// `$single_var`), else `defaults`.
///
/// # Panics
/// On a seed that does not parse, naming it.
pub fn from_env(list_var: &str, single_var: &str, defaults: &[u64]) -> Vec<u64> {
    let list = std::env::var(list_var)
        .or_else(|_| std::env::var(single_var))
        .unwrap_or_default();
    let seeds = parse(&list);
    if seeds.is_empty() {
        defaults.to_vec()
    } else {
        seeds
    }
}

/// `"1, 0x2a"` → `[1, 42]`; empty items are skipped.
fn parse(list: &str) -> Vec<u64> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.strip_prefix("0x")
                .map_or_else(|| s.parse(), |hex| u64::from_str_radix(hex, 16))
                .unwrap_or_else(|e| panic!("seed {s:?}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn decimal_and_hex_seeds_parse_and_empty_items_are_skipped() {
        assert_eq!(parse(" 7, 0x2a,,"), vec![7, 42]);
        assert!(parse("").is_empty());
    }

    #[test]
    #[should_panic(expected = "seed \"x1\"")]
    fn a_bad_seed_is_named() {
        let _ = parse("x1");
    }
}
