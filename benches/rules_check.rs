//! How long a big rules file takes to check and compile: what `tally rules check` and the
//! Lambda's init pay for it. Each file is generated in memory (about 1 MB, each stressing one
//! dimension: one long pattern, many aggregates, many entities, many fields, many attributes,
//! wide aggregate keys, many errors; and the 1,000 aggregates `rules check` proves apart pair by
//! pair at most) and loaded with [`Rules::from_toml`]; the bench prints, per file, its size,
//! whether it loaded (the first problem if not: files past the checks' limits are refused, after
//! the compile the bench is about), the best of a few loads' times, and the process's peak
//! resident memory. Timings are printed for orientation, never asserted.
//!
//! Each file is generated and loaded in a process of its own (the bench runs itself with
//! `--rules-check-file N`), so that its peak memory is its own: Linux's `VmHWM` from
//! `/proc/self/status` after the loads, beside `VmRSS` before them (the generated text and
//! the program itself); `n/a` off Linux. It is the whole process's, allocator slack included.
//!
//! `make bench` runs it, or `cargo bench --bench rules_check` (no DynamoDB Local needed).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aggregates::Rules;

/// Loads per file; the best is printed.
const RUNS: usize = 3;

/// What `body` writes, then the university's `[table]` (last: `body` may start with dotted
/// top-level keys, which must come before any table header).
fn file(body: impl FnOnce(&mut String)) -> String {
    let mut text = String::new();
    body(&mut text);
    text.push_str("\n[table]\npk = \"pk\"\nsk = \"sk\"\nentity_type = \"entityType\"\nbookkeeping_prefix = \"tally#\"\n");
    text
}

/// One entity whose sort key pattern has `captures` captures (`{c0}#{c1}#...`), feeding one
/// aggregate keyed on the first.
fn one_long_pattern(captures: usize) -> String {
    file(|text| {
        text.push_str("[aggregates.stats]\npk = \"stats#{c0}\"\nsk = \"all\"\ncounters = [\"items\"]\n\n");
        text.push_str("[entities.wide]\npk = \"wide#{id}\"\nsk = \"");
        for capture in 0..captures {
            if capture > 0 {
                text.push('#');
            }
            let _ = write!(text, "{{c{capture}}}");
        }
        text.push_str("\"\n\n[[entities.wide.contributions]]\nto = \"stats\"\nkey = { c0 = \"c0\" }\nadd = { items = 1 }\n");
    })
}

/// `aggregates` aggregates, all fed by one entity's one contribution (`to = [...]`).
fn many_aggregates_one_contribution(aggregates: usize) -> String {
    file(|text| {
        for aggregate in 0..aggregates {
            let _ = writeln!(text, "aggregates.a{aggregate}={{pk=\"s#{{i}}\",sk=\"a{aggregate}\",counters=[\"n\"]}}");
        }
        text.push_str("\n[entities.item]\npk = \"item#{i}\"\nsk = \"x\"\n\n[[entities.item.contributions]]\nto = [");
        for aggregate in 0..aggregates {
            let _ = write!(text, "\"a{aggregate}\",");
        }
        text.push_str("]\nkey = { i = \"i\" }\nadd = { n = 1 }\n");
    })
}

/// `pairs` aggregates, each fed by an entity of its own.
fn aggregates_each_fed_by_an_entity(pairs: usize) -> String {
    file(|text| {
        for pair in 0..pairs {
            let _ = writeln!(text, "aggregates.a{pair}={{pk=\"s#{{i}}\",sk=\"a{pair}\",counters=[\"n{pair}\"]}}");
        }
        for pair in 0..pairs {
            let _ = writeln!(
                text,
                "entities.e{pair}={{pk=\"e{pair}#{{i}}\",sk=\"x\",contributions=[{{to=\"a{pair}\",key={{i=\"i\"}},add={{n{pair}=1}}}}]}}"
            );
        }
    })
}

/// `aggregates` aggregates no entity feeds: as many errors, each with its line and column.
fn unfed_aggregates(aggregates: usize) -> String {
    file(|text| {
        for aggregate in 0..aggregates {
            let _ = writeln!(text, "aggregates.a{aggregate}={{pk=\"s#{{i}}\",sk=\"a{aggregate}\",counters=[\"n\"]}}");
        }
    })
}

/// `entities` entities matched by type, all feeding one aggregate.
fn many_entities(entities: usize) -> String {
    file(|text| {
        text.push_str("aggregates.stats = { pk = \"s#{i}\", sk = \"all\", counters = [\"n\"] }\n");
        for entity in 0..entities {
            let _ = writeln!(
                text,
                "entities.e{entity}={{pk=\"p#{{i}}\",sk=\"e{entity}\",contributions=[{{to=\"stats\",key={{i=\"i\"}},add={{n=1}}}}]}}"
            );
        }
    })
}

/// One aggregate with `fields` counters (and `fields / 2` sums), one entity adding to all of them.
fn many_fields(fields: usize) -> String {
    let sums = fields / 2;
    file(|text| {
        text.push_str("[aggregates.stats]\npk = \"s#{i}\"\nsk = \"all\"\ncounters = [");
        for field in 0..fields {
            let _ = write!(text, "\"f{field}\",");
        }
        text.push_str("]\nsums = [");
        for sum in 0..sums {
            let _ = write!(text, "\"t{sum}\",");
        }
        text.push_str("]\n\n[entities.item]\npk = \"item#{i}\"\nsk = \"x\"\n");
        text.push_str("attributes.amount = { type = \"number\", max_digits = { integer = 10, fraction = 2 } }\n");
        text.push_str("\n[[entities.item.contributions]]\nto = \"stats\"\nkey = { i = \"i\" }\nadd = { ");
        for field in 0..fields {
            let _ = write!(text, "f{field}=1,");
        }
        for sum in 0..sums {
            let _ = write!(text, "t{sum}=\"amount\",");
        }
        text.push_str("}\n");
    })
}

/// One entity with `attributes` attributes, each contribution conditioned on one of them.
fn many_attributes(attributes: usize) -> String {
    file(|text| {
        text.push_str(
            "aggregates.stats = { pk = \"s#{i}\", sk = \"all\", counters = [\"n\"] }\n\n[entities.item]\npk = \"item#{i}\"\nsk = \"x\"\n",
        );
        for attribute in 0..attributes {
            let _ = writeln!(text, "attributes.v{attribute}={{type=\"id\",optional=true}}");
        }
        for attribute in (0..attributes).step_by(4) {
            let _ = writeln!(
                text,
                "[[entities.item.contributions]]\nto = \"stats\"\nkey = {{ i = \"i\" }}\nwhen = {{ present = \"v{attribute}\" }}\nadd = {{ n = 1 }}"
            );
        }
    })
}

/// An aggregate keyed on `params` parameters, each bound to an entity's capture of that name.
fn wide_keys(params: usize) -> String {
    let pattern = |prefix: &str| {
        let mut pattern = String::from(prefix);
        for param in 0..params {
            let _ = write!(pattern, "#{{p{param}}}");
        }
        pattern
    };
    file(|text| {
        let _ = writeln!(text, "[aggregates.stats]\npk = \"{}\"\nsk = \"all\"\ncounters = [\"n\"]\n", pattern("s"));
        let _ = writeln!(text, "[entities.item]\npk = \"{}\"\nsk = \"x\"\n", pattern("item"));
        text.push_str("[[entities.item.contributions]]\nto = \"stats\"\nadd = { n = 1 }\nkey = { ");
        for param in 0..params {
            let _ = write!(text, "p{param}=\"p{param}\",");
        }
        text.push_str("}\n");
    })
}

/// Generates one file's text.
type Generator = fn() -> String;

/// The generated files, by name; each is generated only when it is measured.
const FILES: &[(&str, Generator)] = &[
    ("one pattern, 120k captures", || one_long_pattern(120_000)),
    ("30k aggregates, one contribution to all", || many_aggregates_one_contribution(30_000)),
    ("8k aggregates, each fed by its own entity", || aggregates_each_fed_by_an_entity(8_000)),
    ("1k aggregates, each fed by its own entity", || aggregates_each_fed_by_an_entity(1_000)),
    ("12k entities", || many_entities(12_000)),
    ("40k counters + 20k sums, all added to", || many_fields(40_000)),
    ("20k attributes, 5k conditions", || many_attributes(20_000)),
    ("40k key parameters", || wide_keys(40_000)),
    ("20k aggregates no entity feeds (20k errors)", || unfed_aggregates(20_000)),
];

/// The argument that makes the bench measure one file, in a process of its own.
const ONE: &str = "--rules-check-file";

/// A line of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`), if there is one.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Generates and loads file `index`, printing its line.
fn measure(index: usize) {
    let (name, generate) = FILES[index];
    let text = generate();
    let before = status_mib("VmRSS:");
    let mut best = Duration::MAX;
    let (mut loads, mut first_error) = (String::new(), None);
    for _ in 0..RUNS {
        let start = Instant::now();
        let rules = Rules::from_toml(&text, "bench.toml");
        best = best.min(start.elapsed());
        loads = match &rules {
            Ok(_) => "ok".into(),
            Err(errors) => {
                first_error.get_or_insert_with(|| errors.errors[0].to_string());
                format!("{} err", errors.errors.len())
            }
        };
        drop(rules);
    }
    let mib = |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |mib| format!("{mib:.1} MiB"));
    let (before, peak) = (mib(before), mib(status_mib("VmHWM:")));
    println!("{name:<44} {:>9} {loads:>7} {:>9.3} s {before:>11} {peak:>11}", text.len(), best.as_secs_f64());
    if let Some(error) = first_error {
        // Messages quote patterns, which are long here.
        let shown: String = error.chars().take(150).collect();
        println!("  first error: {shown}{}", if shown.len() < error.len() { "..." } else { "" });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(index) = args.iter().position(|arg| arg == ONE).and_then(|at| args.get(at + 1)?.parse().ok()) {
        measure(index);
        return;
    }
    println!("rules check: Rules::from_toml of generated files, best of {RUNS} loads; each file in a process of its own,");
    println!("whose resident memory before the loads (the text generated) and peak (VmHWM) are shown");
    println!("{:<44} {:>9} {:>7} {:>11} {:>11} {:>11}", "file", "bytes", "loads", "time", "RSS before", "peak RSS");
    let exe = std::env::current_exe().expect("the bench's own path");
    for (index, (name, _)) in FILES.iter().enumerate() {
        let status = std::process::Command::new(&exe).args([ONE, &index.to_string()]).status().expect("the bench runs itself");
        if !status.success() {
            println!("{name:<44} failed: {status}");
        }
    }
}
