//! Architecture invariants: `src/core` is sans-IO (nothing in it names
//! tokio, std::net, std::fs, std::thread or a clock) and made of files
//! small enough to read whole; CIM-XML element names appear only in
//! src/cim/xml.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio::", "async runtime"),
    ("std::net", "sockets"),
    ("std::fs", "files"),
    ("std::thread", "threads"),
    ("std::time", "clocks"),
    ("Instant::now", "clock"),
    ("SystemTime", "clock"),
    ("chrono::", "clock"),
    ("std::process", "processes"),
    ("std::io::stdin", "console"),
];

/// Returns one message per forbidden use in `source` (comments ignored).
fn violations(file: &str, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        // Grouped imports: `use std::{fs, net::TcpStream}`.
        let flat = code.replace(' ', "");
        let mut found: Vec<&str> = FORBIDDEN
            .iter()
            .filter(|(p, _)| code.contains(p))
            .map(|(p, _)| *p)
            .collect();
        if let Some(i) = flat.find("std::{") {
            let group = &flat[i + 6..];
            for m in ["fs", "net", "thread", "time", "process"] {
                if group
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == m)
                {
                    found.push(m);
                }
            }
        }
        for f in found {
            out.push(format!("{file}:{}: uses {f}: {}", n + 1, line.trim()));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable source dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn core_is_sans_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() >= 7,
        "expected the core's modules, found {files:?}"
    );
    let mut all = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        all.extend(violations(&f.display().to_string(), &text));
    }
    assert!(
        all.is_empty(),
        "src/core must do no I/O:\n{}",
        all.join("\n")
    );
}

/// No file of the core is over 600 lines: each operation lives in a file
/// of its own (src/core/array/), small enough to read whole.
#[test]
fn no_core_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f)
                .expect("readable")
                .lines()
                .count();
            (n > 600).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        files.len() >= 20,
        "expected the core's modules, found {files:?}"
    );
    assert!(
        long.is_empty(),
        "split these by operation:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_lint_catches_what_it_claims_to() {
    assert_eq!(violations("x.rs", "use std::fs::File;").len(), 1);
    assert_eq!(
        violations("x.rs", "use std::{collections::BTreeMap, net::TcpStream};").len(),
        1
    );
    assert_eq!(
        violations("x.rs", "let t = std::time::Instant::now();").len(),
        2
    );
    assert_eq!(violations("x.rs", "tokio::spawn(async {});").len(), 1);
    assert_eq!(violations("x.rs", "// tokio is not used here").len(), 0);
    assert_eq!(
        violations("x.rs", "use std::collections::BTreeMap;").len(),
        0
    );
    assert_eq!(violations("x.rs", "let s = \"synchronous\";").len(), 0);
    assert_eq!(violations("x.rs", "let now = chrono::Utc::now();").len(), 1);
}

/// Every element name of DSP0201 (CIM-XML).
const ELEMENTS: &[&str] = &[
    "CIM",
    "DECLARATION",
    "DECLGROUP",
    "DECLGROUP.WITHNAME",
    "DECLGROUP.WITHPATH",
    "QUALIFIER.DECLARATION",
    "SCOPE",
    "VALUE",
    "VALUE.ARRAY",
    "VALUE.REFERENCE",
    "VALUE.REFARRAY",
    "VALUE.OBJECT",
    "VALUE.NAMEDINSTANCE",
    "VALUE.NAMEDOBJECT",
    "VALUE.OBJECTWITHLOCALPATH",
    "VALUE.OBJECTWITHPATH",
    "VALUE.NULL",
    "VALUE.INSTANCEWITHPATH",
    "NAMESPACEPATH",
    "LOCALNAMESPACEPATH",
    "HOST",
    "NAMESPACE",
    "CLASSPATH",
    "LOCALCLASSPATH",
    "CLASSNAME",
    "INSTANCEPATH",
    "LOCALINSTANCEPATH",
    "INSTANCENAME",
    "OBJECTPATH",
    "KEYBINDING",
    "KEYVALUE",
    "CLASS",
    "INSTANCE",
    "QUALIFIER",
    "PROPERTY",
    "PROPERTY.ARRAY",
    "PROPERTY.REFERENCE",
    "METHOD",
    "PARAMETER",
    "PARAMETER.REFERENCE",
    "PARAMETER.ARRAY",
    "PARAMETER.REFARRAY",
    "MESSAGE",
    "MULTIREQ",
    "MULTIEXPREQ",
    "SIMPLEREQ",
    "SIMPLEEXPREQ",
    "IMETHODCALL",
    "METHODCALL",
    "EXPMETHODCALL",
    "PARAMVALUE",
    "IPARAMVALUE",
    "EXPPARAMVALUE",
    "MULTIRSP",
    "MULTIEXPRSP",
    "SIMPLERSP",
    "SIMPLEEXPRSP",
    "METHODRESPONSE",
    "EXPMETHODRESPONSE",
    "IMETHODRESPONSE",
    "ERROR",
    "RETURNVALUE",
    "IRETURNVALUE",
    "CORRELATOR",
    "ENUMERATIONCONTEXT",
];

/// One message per place `source` writes a CIM-XML tag (`<NAME>`,
/// `<NAME `, `</NAME>`) or matches an element by its bare name (`"NAME"`).
fn xml_names(file: &str, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        for e in ELEMENTS {
            let forms = [
                format!("<{e}>"),
                format!("<{e} "),
                format!("</{e}>"),
                format!("\"{e}\""),
            ];
            if forms.iter().any(|f| code.contains(f.as_str())) {
                out.push(format!("{file}:{}: names {e}: {}", n + 1, line.trim()));
            }
        }
    }
    out
}

/// CIM-XML is written and read only in src/cim/xml: no other file writes
/// a tag or matches an element by name, so the wire format has one home.
#[test]
fn xml_element_names_live_only_in_cim_xml() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let home = src.join("cim/xml");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut all = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&home)) {
        let text = std::fs::read_to_string(f).expect("readable");
        all.extend(xml_names(&f.display().to_string(), &text));
    }
    assert!(
        files.len() >= 50,
        "expected the sources, found {}",
        files.len()
    );
    assert!(
        all.is_empty(),
        "move these into src/cim/xml:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_xml_lint_catches_what_it_claims_to() {
    assert_eq!(
        xml_names("x.rs", "out.extend(b\"<IRETURNVALUE>\");").len(),
        1
    );
    assert_eq!(
        xml_names("x.rs", "out.extend(b\"</VALUE.ARRAY>\");").len(),
        1
    );
    assert_eq!(
        xml_names("x.rs", "w(\"<PARAMVALUE NAME=\\\"x\\\">\");").len(),
        1
    );
    assert_eq!(xml_names("x.rs", "e.child(\"INSTANCENAME\")").len(), 1);
    assert_eq!(xml_names("x.rs", "// writes <VALUE>").len(), 0);
    assert_eq!(
        xml_names("x.rs", "let s = \"a VALUE of the class\";").len(),
        0
    );
}

/// The README's commands carry no secret on a command line, where `ps`
/// shows it to every user: no `--password VALUE`, no pywbemcli `-u U -p PW`,
/// no `user:password@` in a URL. (Prose may mention `--password`, as a
/// demo-only option; the commands themselves must not use it.)
#[test]
fn no_secret_on_a_command_line_in_the_readme() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut in_code = false;
    let mut bad = Vec::new();
    let mut commands = 0;
    for (n, line) in readme.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        commands += 1;
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let next = words.get(i + 1).copied().unwrap_or("");
            let secret_follows =
                !next.is_empty() && !next.starts_with('-') && !next.starts_with('#');
            let pywbemcli_password = *w == "-p" && i > 0 && words[..i].contains(&"-u");
            if (*w == "--password" && secret_follows) || pywbemcli_password {
                bad.push(format!("README.md:{}: {line}", n + 1));
            }
            if let Some(rest) = w.split("://").nth(1) {
                let authority = rest.split('/').next().unwrap_or("");
                if let Some((userinfo, _)) = authority.split_once('@') {
                    if userinfo.contains(':') {
                        bad.push(format!("README.md:{}: {line}", n + 1));
                    }
                }
            }
        }
    }
    assert!(commands > 50, "too few command lines found: {commands}");
    assert!(
        bad.is_empty(),
        "secrets on command lines:\n{}",
        bad.join("\n")
    );
}
