//! "Did you mean …?" for misspelt names: operators and keywords here, columns and functions in
//! the planner.

/// The candidate closest to `word`, if it is close enough to be a plausible typo: an exact match
/// ignoring case first (`WHERE` → `where`), then the smallest optimal-string-alignment distance
/// (edits plus adjacent swaps, so `modle` → `model` is one edit) within about a third of the
/// word's length. Ties go to a candidate with the same first letter, then to the earlier one.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    if let Some(c) = candidates
        .iter()
        .find(|c| c.eq_ignore_ascii_case(word) && **c != word)
    {
        return Some(c);
    }
    let lower = word.to_ascii_lowercase();
    let len = lower.chars().count();
    // One- and two-letter words are within one edit of too much to guess.
    if !(3..=64).contains(&len) {
        return None;
    }
    let limit = (len / 3).clamp(1, 3);
    let first = lower.chars().next();
    let mut best: Option<((usize, bool), &'a str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let c_lower = c.to_ascii_lowercase();
        let d = distance(&lower, &c_lower);
        // Rank: distance, then "first letter differs" (false sorts first).
        let rank = (d, c_lower.chars().next() != first);
        if d <= limit && best.is_none_or(|(br, _)| rank < br) {
            best = Some((rank, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein plus transpositions of adjacent characters).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    // Three rows: two back (for transpositions), previous and current.
    let mut prev2 = vec![0usize; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur = vec![0usize; m + 1];
    for i in 1..=n {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let ops = ["where", "summarize", "sort", "take"];
        assert_eq!(did_you_mean("summarise", ops), Some("summarize"));
        assert_eq!(did_you_mean("WHERE", ops), Some("where"));
        assert_eq!(did_you_mean("wher", ops), Some("where"));
        assert_eq!(did_you_mean("join", ops), None);
        assert_eq!(did_you_mean("modle", ["model", "mode"]), Some("model"));
        assert_eq!(did_you_mean("bye", ["by"]), Some("by"));
        assert_eq!(did_you_mean("", ["by"]), None);
        assert_eq!(did_you_mean("x", ["s", "m"]), None);
        assert_eq!(did_you_mean("dsc", ["asc", "desc"]), Some("desc"));
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ab", "ba"), 1);
    }
}
