//! The one order of names everywhere (REST, gRPC, the availability CSV,
//! the dashboard's `Intl.Collator` with `numeric`): natural — runs of
//! digits compare as numbers (`lo-2` before `lo-10`), letters without
//! regard to case; names equal that way fall back to their bytes, so the
//! order is total.

use std::cmp::Ordering;

/// `a` against `b` in natural order.
pub fn cmp(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a, b);
    loop {
        match (left.chars().next(), right.chars().next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (x_digits, x_rest) = split_digits(left);
                let (y_digits, y_rest) = split_digits(right);
                let order = compare_numbers(x_digits, y_digits);
                if order != Ordering::Equal {
                    return order;
                }
                (left, right) = (x_rest, y_rest);
            }
            (Some(x), Some(y)) => {
                let order = x.to_lowercase().cmp(y.to_lowercase());
                if order != Ordering::Equal {
                    return order;
                }
                (left, right) = (&left[x.len_utf8()..], &right[y.len_utf8()..]);
            }
        }
    }
}

/// The leading run of ASCII digits of `text`, and the rest.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Two runs of digits as the numbers they write (any length).
fn compare_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_names_sort_as_numbers() {
        let mut names = vec![
            "lo-100", "lo-10", "lo-2", "Lo-1", "lo-1", "atm-007", "atm-7b", "atm-8",
        ];
        names.sort_by(|a, b| cmp(a, b));
        assert_eq!(
            names,
            [
                "atm-007", "atm-7b", "atm-8", "Lo-1", "lo-1", "lo-2", "lo-10", "lo-100"
            ]
        );
    }

    #[test]
    fn the_order_is_total_and_consistent() {
        let names = [
            "a",
            "A",
            "a1",
            "a01",
            "a001",
            "",
            "9",
            "10",
            "é",
            "E",
            "x99999999999999999999",
        ];
        for a in names {
            assert_eq!(cmp(a, a), Ordering::Equal);
            for b in names {
                assert_eq!(cmp(a, b), cmp(b, a).reverse(), "{a} {b}");
                if a != b {
                    assert_ne!(cmp(a, b), Ordering::Equal, "{a} {b}");
                }
            }
        }
    }
}
