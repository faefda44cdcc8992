//! The config loader on mutations of the shipped config/*.yaml files: byte flips,
//! line deletions and duplications, re-indentation, and values swapped for other
//! YAML types. It answers with a config or with errors, never a panic, and every
//! error names the file and a line inside it.

use proptest::prelude::*;
use switchyard::config::load_str;

use crate::cases;

const SHIPPED: &[(&str, &str)] = &[
    (
        "switchyard.example.yaml",
        include_str!("../../config/switchyard.example.yaml"),
    ),
    (
        "cross-provider.yaml",
        include_str!("../../config/cross-provider.yaml"),
    ),
    ("demo.yaml", include_str!("../../config/demo.yaml")),
];

/// Values of other YAML types (and of the right type but out of range) to put
/// where a value was.
const SWAPS: &[&str] = &[
    "[1, 2]",
    "[]",
    "{ a: 1 }",
    "{}",
    "-5",
    "0",
    "99999999999999999999",
    "1.5",
    "true",
    "null",
    "~",
    "\"\"",
    "x",
    "10ms",
    "0s",
    "5m",
    "-1s",
    "1e400",
    "\"${UNSET}\"",
    "\"$${x}\"",
    "\"${\"",
    "&anchor v",
    "*anchor",
    "!!binary AAAA",
    "'quoted'",
    "\"\\u0000\"",
    "|\n  block",
    ">-",
    "0.0.0.0:0",
    "127.0.0.1:99999",
    "http://",
    "https://h:0/x",
    "ftp://h",
    "[[[]]]",
    "?",
    "- a",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bits of the byte at this position.
    FlipByte(usize, u8),
    DeleteLine(usize),
    DuplicateLine(usize),
    /// Indent (or dedent, when `false`) this line by two spaces.
    Indent(usize, bool),
    /// Replace the value after the first `: ` on this line.
    SwapValue(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, bits)| Mutation::FlipByte(at, bits)),
        1 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(at, more)| Mutation::Indent(at, more)),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(at, swap)| Mutation::SwapValue(at, swap)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut text = text.to_owned();
    for mutation in mutations {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let count = lines.len().max(1);
        match *mutation {
            Mutation::FlipByte(at, bits) => {
                let mut bytes = text.into_bytes();
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= bits | 1;
                }
                // The loader takes text; invalid UTF-8 is the reader's concern.
                text = String::from_utf8_lossy(&bytes).into_owned();
                continue;
            }
            Mutation::DeleteLine(at) if !lines.is_empty() => {
                lines.remove(at % count);
            }
            Mutation::DuplicateLine(at) if !lines.is_empty() => {
                let line = lines[at % count].clone();
                lines.insert(at % count, line);
            }
            Mutation::Indent(at, more) if !lines.is_empty() => {
                let line = &mut lines[at % count];
                if more {
                    line.insert_str(0, "  ");
                } else if let Some(rest) = line.strip_prefix("  ") {
                    *line = rest.to_owned();
                }
            }
            Mutation::SwapValue(at, swap) => {
                // Among the lines that have a value, pick one.
                let valued: Vec<usize> = (0..lines.len())
                    .filter(|&i| lines[i].contains(": "))
                    .collect();
                if let Some(&i) = valued.get(at % valued.len().max(1)) {
                    let line = &lines[i];
                    let colon = line.find(": ").unwrap_or(0);
                    let value = SWAPS[swap % SWAPS.len()];
                    // Flow mappings (`{ a: b, c: d }`) keep their tail after the value.
                    let tail = line[colon + 2..]
                        .find([',', '}'])
                        .map_or("", |end| &line[colon + 2 + end..]);
                    lines[i] = format!("{}: {value}{tail}", &line[..colon]);
                }
            }
            _ => {}
        }
        text = lines.join("\n");
        text.push('\n');
    }
    text
}

#[test]
fn shipped_configs_load() {
    for (name, text) in SHIPPED {
        load_str(text, name, &|var| Some(format!("v-{var}"))).unwrap_or_else(|e| panic!("{e}"));
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Mutated shipped configs load or fail with errors that each name the file
    /// and a line of it.
    #[test]
    fn mutated_configs_load_or_say_where(
        file in 0..SHIPPED.len(),
        mutations in prop::collection::vec(mutation(), 1..4),
        env_set in any::<bool>(),
    ) {
        let (name, original) = SHIPPED[file];
        let text = mutate(original, &mutations);
        let env = |var: &str| env_set.then(|| format!("v-{var}"));
        let Err(errors) = load_str(&text, name, &env) else { return Ok(()) };
        prop_assert!(!errors.0.is_empty(), "failed without saying why");
        let lines = text.lines().count().max(1);
        for error in &errors.0 {
            prop_assert_eq!(&error.origin, name);
            let Some(line) = error.line else {
                return Err(TestCaseError::fail(format!("no line: {error}\n---\n{text}")));
            };
            prop_assert!((1..=lines + 1).contains(&line), "line {} of {}: {}", line, lines, error);
            let prefix = format!("{name}:{line}: ");
            prop_assert!(error.to_string().starts_with(&prefix), "{}", error);
        }
    }
}
