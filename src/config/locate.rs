//! Finding the line of a YAML path (`routes[2].targets[0].provider`) in the
//! config text, so semantic errors can say where they are.
//!
//! It asks the real YAML parser: a seeker walks the document along the path and
//! stops with a marker error at the node it wants; the parser stamps that error
//! with the node's position. Block and flow style, comments and anchors all work,
//! and odd input simply yields `None`.

use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root, displayed as `routes[0].targets[1].provider`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(Vec<Seg>);

impl YamlPath {
    pub fn key(&self, key: &str) -> YamlPath {
        self.with(Seg::Key(key.to_string()))
    }

    pub fn index(&self, index: usize) -> YamlPath {
        self.with(Seg::Index(index))
    }

    pub fn with(&self, seg: Seg) -> YamlPath {
        let mut segs = self.0.clone();
        segs.push(seg);
        YamlPath(segs)
    }

    pub fn segments(&self) -> &[Seg] {
        &self.0
    }

    pub fn last(&self) -> Option<&Seg> {
        self.0.last()
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) if i == 0 => write!(f, "{key}")?,
                Seg::Key(key) => write!(f, ".{key}")?,
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line of the deepest prefix of `path` present in `text`; `None` when
/// not even the document root can be found (empty or broken text).
pub fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    (0..=path.len()).rev().find_map(|depth| {
        path.get(..depth)
            .and_then(|prefix| exact_line(text, prefix))
    })
}

/// 1-based line where a second YAML document starts (or where reading it fails).
/// serde_yaml rejects a file holding several documents (a stray `---` or `...`,
/// or a top-level key indented by mistake) without saying where; this is where.
pub fn second_document_line(text: &str) -> Option<usize> {
    let mut documents = serde_yaml::Deserializer::from_str(text);
    // After a failed document the iterator must not be advanced again (serde_yaml
    // can panic on the events left behind), so stop at the first error.
    if let Err(error) = IgnoredAny::deserialize(documents.next()?) {
        return error.location().map(|l| l.line());
    }
    match Seek(&[]).deserialize(documents.next()?) {
        Err(error) => error.location().map(|l| l.line()),
        Ok(()) => None,
    }
}

const FOUND: &str = "\u{0}switchyard-locate-found";

fn exact_line(text: &str, path: &[Seg]) -> Option<usize> {
    let document = serde_yaml::Deserializer::from_str(text);
    match Seek(path).deserialize(document) {
        Err(error) if error.to_string().contains(FOUND) => error.location().map(|l| l.line()),
        _ => None,
    }
}

fn found<E: de::Error>() -> E {
    E::custom(FOUND)
}

/// Walks along the path; `Ok(())` means the path is not in the document.
struct Seek<'p>(&'p [Seg]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seek<'_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(found())
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.scalar()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.scalar()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.scalar()
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.0.split_first() else {
            return Err(found());
        };
        let Seg::Key(want) = first else {
            return Ok(());
        };
        let last = rest.is_empty();
        while let Some(hit) = map.next_key_seed(KeySeek { want, last })? {
            if hit {
                return map.next_value_seed(Seek(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.0.split_first() else {
            return Err(found());
        };
        let Seg::Index(want) = first else {
            return Ok(());
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek(rest))?;
        Ok(())
    }
}

/// Reads one mapping key: `true` when it is the wanted one (or the marker error
/// when it is also the last step, so the error carries the key's position).
struct KeySeek<'w> {
    want: &'w str,
    last: bool,
}

impl KeySeek<'_> {
    fn check<E: de::Error>(&self, key: &str) -> Result<bool, E> {
        match (key == self.want, self.last) {
            (true, true) => Err(found()),
            (hit, _) => Ok(hit),
        }
    }
}

impl<'de> DeserializeSeed<'de> for KeySeek<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeek<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        self.check(key)
    }

    fn visit_bool<E: de::Error>(self, key: bool) -> Result<bool, E> {
        self.check(&key.to_string())
    }

    fn visit_i64<E: de::Error>(self, key: i64) -> Result<bool, E> {
        self.check(&key.to_string())
    }

    fn visit_u64<E: de::Error>(self, key: u64) -> Result<bool, E> {
        self.check(&key.to_string())
    }

    fn visit_f64<E: de::Error>(self, key: f64) -> Result<bool, E> {
        self.check(&key.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str]) -> YamlPath {
        parts
            .iter()
            .fold(YamlPath::default(), |p, part| match part.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(part),
            })
    }

    fn line(text: &str, parts: &[&str]) -> Option<usize> {
        line_of(text, path(parts).segments())
    }

    const TEXT: &str = "\
# comment
listen: 0.0.0.0:8080
providers:
  openai: { kind: openai, base_url: https://x }
  local:
    kind: openai-compatible
    base_url: http://127.0.0.1:9001
routes:
  - name: chat
    targets:
      - { provider: openai, model: gpt-4o }
      - provider: local
        model: llama
  - name: other
    match: { model: [a, b] }
";

    #[test]
    fn finds_block_and_flow_nodes() {
        assert_eq!(line(TEXT, &["listen"]), Some(2));
        assert_eq!(line(TEXT, &["providers", "openai", "kind"]), Some(4));
        assert_eq!(line(TEXT, &["providers", "local", "base_url"]), Some(7));
        assert_eq!(line(TEXT, &["routes", "0", "name"]), Some(9));
        assert_eq!(
            line(TEXT, &["routes", "0", "targets", "0", "provider"]),
            Some(11)
        );
        assert_eq!(
            line(TEXT, &["routes", "0", "targets", "1", "model"]),
            Some(13)
        );
        assert_eq!(line(TEXT, &["routes", "1"]), Some(14));
        assert_eq!(
            line(TEXT, &["routes", "1", "match", "model", "1"]),
            Some(15)
        );
    }

    #[test]
    fn falls_back_to_the_deepest_part_found() {
        assert_eq!(line(TEXT, &["routes", "1", "retry", "attempts"]), Some(14));
        assert_eq!(line(TEXT, &["routes", "7", "name"]), Some(8));
        assert_eq!(line(TEXT, &["health", "window"]), Some(2));
        assert_eq!(line(TEXT, &["listen", "deeper"]), Some(2));
    }

    #[test]
    fn odd_input_gives_none_or_a_line() {
        assert_eq!(line("", &["a"]), Some(1));
        assert!(line("a: [", &["a"]).is_some_and(|l| l == 1));
        assert_eq!(line("[1, 2]", &["a"]), Some(1));
        assert_eq!(line("- x\n- y\n", &["1"]), Some(2));
        assert_eq!(line("a: &x {b: 1}\nc: *x\n", &["c", "b"]), Some(1));
        assert_eq!(line("? [1, 2]\n: v\nk: 1\n", &["k"]), Some(3));
        assert_eq!(line("200: ok\n", &["200"]), Some(1));
    }

    #[test]
    fn displays_paths() {
        assert_eq!(
            path(&["routes", "0", "targets", "1", "provider"]).to_string(),
            "routes[0].targets[1].provider"
        );
        assert_eq!(YamlPath::default().to_string(), "");
    }
}
