//! Cycles between sibling modules.
//!
//! A reference from module `m` to module `n` is an edge between the two children of
//! their closest common ancestor that contain them: `gpu::health` naming
//! `config::Thresholds` is the edge `gpu -> config`; `admin::models` naming
//! `admin::server::X` is `admin::models -> admin::server`. A module naming its own
//! ancestors or descendants adds no edge (a parent re-exporting its children, a child
//! using its parent's items). A cycle is a strongly connected component of more than one
//! module in that graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::PathBuf;

use crate::modtree::{ModPath, Reference};

/// One edge between sibling modules, with the first reference that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub file: PathBuf,
    pub line: u32,
    /// The path as written, e.g. `crate::gpu::health::Thresholds`.
    pub path: String,
    /// The modules whose code makes the reference and that it names, when deeper than
    /// `from` and `to`.
    pub via: (String, String),
}

/// Sibling modules of one crate that depend on each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The package name, and for a binary `/bin-name`.
    pub krate: String,
    /// The modules in the cycle, sorted.
    pub members: Vec<String>,
    /// A shortest cycle through the first member, edge by edge.
    pub chain: Vec<Edge>,
    /// The other edges between members.
    pub other_edges: Vec<Edge>,
}

impl Cycle {
    /// `crate: a, b`: what an allow-list names.
    pub fn key(&self) -> String {
        format!("{}: {}", self.krate, self.members.join(", "))
    }
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}: {}:{} `{}`",
            self.from,
            self.to,
            self.file.display(),
            self.line,
            self.path
        )?;
        if self.via != (self.from.clone(), self.to.clone()) {
            write!(f, " (in {}, naming {})", self.via.0, self.via.1)?;
        }
        Ok(())
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.chain.iter().map(|e| e.from.as_str()).collect();
        names.extend(self.chain.first().map(|e| e.from.as_str()));
        writeln!(f, "{}: module cycle {}", self.krate, names.join(" -> "))?;
        for e in &self.chain {
            writeln!(f, "    {e}")?;
        }
        if !self.other_edges.is_empty() {
            writeln!(f, "  other edges between {}:", self.members.join(", "))?;
            for e in &self.other_edges {
                writeln!(f, "    {e}")?;
            }
        }
        Ok(())
    }
}

/// The sibling edge a reference makes, if any: the children of the common ancestor.
fn sibling_edge(r: &Reference) -> Option<(ModPath, ModPath)> {
    let common = r.from.iter().zip(&r.to).take_while(|(a, b)| a == b).count();
    if common >= r.from.len() || common >= r.to.len() {
        return None; // an ancestor, a descendant or itself
    }
    Some((r.from[..=common].to_vec(), r.to[..=common].to_vec()))
}

/// Tarjan's strongly connected components, each sorted, in order of their first node.
fn components(
    nodes: &BTreeSet<ModPath>,
    succ: &BTreeMap<ModPath, Vec<ModPath>>,
) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        succ: &'a BTreeMap<ModPath, Vec<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.succ.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        succ,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// A shortest cycle through `start` inside `members`, as its nodes in order.
fn shortest_cycle(
    start: &ModPath,
    members: &BTreeSet<ModPath>,
    succ: &BTreeMap<ModPath, Vec<ModPath>>,
) -> Vec<ModPath> {
    let mut parent: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in succ
            .get(v)
            .into_iter()
            .flatten()
            .filter(|w| members.contains(*w))
        {
            if w == start {
                let mut path = vec![v.clone()];
                let mut at = v;
                while at != start {
                    at = parent[at];
                    path.push(at.clone());
                }
                path.reverse();
                return path;
            }
            if !parent.contains_key(w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start.clone()]
}

/// The cycles made by a crate's references (sorted by file and line, so the first
/// reference of each edge is the one reported).
pub(crate) fn sibling_cycles(krate: &str, references: &[Reference]) -> Vec<Cycle> {
    let mut edges: BTreeMap<(ModPath, ModPath), &Reference> = BTreeMap::new();
    for r in references {
        if let Some(edge) = sibling_edge(r) {
            edges.entry(edge).or_insert(r);
        }
    }
    let mut nodes = BTreeSet::new();
    let mut succ: BTreeMap<ModPath, Vec<ModPath>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        nodes.insert(a.clone());
        nodes.insert(b.clone());
        succ.entry(a.clone()).or_default().push(b.clone());
    }
    let edge = |a: &ModPath, b: &ModPath| {
        let r = edges[&(a.clone(), b.clone())];
        Edge {
            from: show(a),
            to: show(b),
            file: r.file.clone(),
            line: r.line,
            path: r.path.clone(),
            via: (show(&r.from), show(&r.to)),
        }
    };
    let mut cycles = Vec::new();
    for comp in components(&nodes, &succ)
        .into_iter()
        .filter(|c| c.len() > 1)
    {
        let members: BTreeSet<ModPath> = comp.iter().cloned().collect();
        let order = shortest_cycle(&comp[0], &members, &succ);
        let pairs: Vec<(&ModPath, &ModPath)> =
            order.iter().zip(order.iter().cycle().skip(1)).collect();
        let chain: Vec<Edge> = pairs.iter().map(|(a, b)| edge(a, b)).collect();
        let other_edges = edges
            .keys()
            .filter(|(a, b)| members.contains(a) && members.contains(b) && !pairs.contains(&(a, b)))
            .map(|(a, b)| edge(a, b))
            .collect();
        cycles.push(Cycle {
            krate: krate.to_owned(),
            members: comp.iter().map(|m| show(m)).collect(),
            chain,
            other_edges,
        });
    }
    cycles
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::modtree::test_source::Files;
    use crate::modtree::walk;

    fn cycles(files: &[(&str, &str)]) -> Vec<Cycle> {
        let tree = walk(&Files::new(files), Path::new("src/lib.rs"));
        sibling_cycles("demo", &tree.references)
    }

    #[test]
    fn a_cycle_through_submodules_is_found_with_its_references() {
        let found = cycles(&[
            ("src/lib.rs", "pub mod config;\npub mod gpu;"),
            (
                "src/config.rs",
                "//! Settings.\n\nuse crate::gpu::health::Thresholds;",
            ),
            ("src/gpu/mod.rs", "pub mod health;"),
            (
                "src/gpu/health.rs",
                "pub struct Thresholds;\nfn f(c: &crate::config::Config) {}",
            ),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        let c = &found[0];
        assert_eq!(c.key(), "demo: config, gpu");
        let chain: Vec<String> = c.chain.iter().map(ToString::to_string).collect();
        assert_eq!(
            chain,
            [
                "config -> gpu: src/config.rs:3 `crate::gpu::health::Thresholds` (in config, naming gpu::health)",
                "gpu -> config: src/gpu/health.rs:2 `crate::config::Config` (in gpu::health, naming config)",
            ]
        );
        assert!(
            c.to_string()
                .starts_with("demo: module cycle config -> gpu -> config\n")
        );
    }

    #[test]
    fn a_cycle_between_nested_siblings_through_super_is_found() {
        let found = cycles(&[
            ("src/lib.rs", "pub mod admin;"),
            ("src/admin/mod.rs", "mod models;\nmod server;\nmod keys;"),
            ("src/admin/models.rs", "use super::server::Ctx;"),
            ("src/admin/server.rs", "fn f() { super::keys::list() }"),
            ("src/admin/keys.rs", "use super::models::Model;"),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].key(),
            "demo: admin::keys, admin::models, admin::server"
        );
        assert_eq!(found[0].chain.len(), 3);
    }

    #[test]
    fn layered_modules_parents_and_children_make_no_cycle() {
        let found = cycles(&[
            (
                "src/lib.rs",
                "pub mod config;\npub mod gpu;\npub use gpu::Gpu;\nfn f() { crate::gpu::start() }",
            ),
            ("src/config.rs", "pub struct Thresholds;"),
            (
                "src/gpu/mod.rs",
                "pub mod health;\nuse crate::config::Thresholds;\nuse self::health::Probe;",
            ),
            (
                "src/gpu/health.rs",
                "use super::Gpu;\nuse crate::Root;\nuse crate::config::Thresholds;",
            ),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn comments_strings_and_test_code_make_no_cycle() {
        let found = cycles(&[
            (
                "src/lib.rs",
                "pub mod a;\npub mod b;\n#[cfg(test)]\nmod testutil;",
            ),
            ("src/a.rs", "pub fn f() { crate::b::g() }"),
            (
                "src/b.rs",
                "//! Unlike [`crate::a::f`] ...\n/* crate::a::f() */\nconst S: &str = \"crate::a::f\";\n\
                 #[cfg(test)]\nmod tests { use crate::a::f; }\n#[cfg(test)]\nmod more;",
            ),
            ("src/b/more.rs", "use crate::a::f;"),
            ("src/testutil.rs", "use crate::a::f; use crate::b::g;"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }
}
