//! Every problem a rules file can have gets its exact, stable message at its line and column,
//! and a file with several problems gets all of them.

use aggregates::rules::Rules;

/// A small valid file: a chat table matched by keys (no entity-type attribute).
const BASE: &str = r#"[table]
pk = "PK"
sk = "SK"
bookkeeping_prefix = "tally#"

[aggregates.chat_stats]
pk = "CONV#{conversationId}"
sk = "STATS"
counters = ["messages"]
sums = ["bytes"]
averages.meanBytes = { sum = "bytes", count = "messages", places = 2 }

[entities.message]
pk = "CONV#{conversationId}"
sk = "MSG#{sentAt:datetime}"

[entities.message.attributes]
size = { type = "number", non_negative = true, max_digits = { integer = 12, fraction = 0 } }

[[entities.message.contributions]]
to = "chat_stats"
key = { conversationId = "conversationId" }
add = { messages = 1, bytes = "size" }
"#;

/// `BASE` with each `(from, to)` replaced (each `from` must occur exactly once).
fn edited(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "`{from}` occurs once in the base file");
        text = text.replace(from, to);
    }
    text
}

/// The problems of a file, `line:column: message` each.
fn problems(text: &str) -> Vec<String> {
    match Rules::from_toml(text, "chat.toml") {
        Ok(_) => vec![],
        Err(errors) => {
            assert_eq!(errors.source_name, "chat.toml");
            errors.errors.iter().map(ToString::to_string).collect()
        }
    }
}

/// A mistake: its name, the edits of `BASE` that make it, and the problems expected.
type Case = (&'static str, &'static [(&'static str, &'static str)], &'static [&'static str]);

#[test]
fn the_base_file_loads() {
    assert_eq!(problems(BASE), Vec::<String>::new());
}

#[test]
fn each_mistake_gets_its_exact_message_and_place() {
    let cases: &[Case] = &[
        // Not TOML, or not the rules' shape: the first problem only, from the toml crate.
        ("syntax", &[("[entities.message]\n", "[entities.message\n")], &["13:18: unclosed table, expected `]`"]),
        (
            "unknown key",
            &[("bookkeeping_prefix = \"tally#\"\n", "bookkeeping_prefix = \"tally#\"\nprefix = \"x\"\n")],
            &["5:1: unknown field `prefix`, expected one of `pk`, `sk`, `entity_type`, `bookkeeping_prefix`, `ttl`, `indexes`, `reserved_prefixes`"],
        ),
        ("wrong TOML type", &[("counters = [\"messages\"]", "counters = \"messages\"")], &["9:12: invalid type: string \"messages\", expected a sequence"]),
        (
            "unknown attribute type",
            &[("type = \"number\"", "type = \"integer\"")],
            &["18:17: unknown variant `integer`, expected one of `id`, `string`, `number`, `date`, `datetime`, `any`"],
        ),
        ("amount of the wrong kind", &[("messages = 1,", "messages = true,")], &["23:20: invalid type: boolean `true`, expected 1 or the name of a number attribute"]),
        // [table] and [limits].
        ("same key attributes", &[("sk = \"SK\"", "sk = \"PK\"")], &["3:6: `table.pk` and `table.sk` are both `PK`"]),
        (
            "entity type is a key",
            &[("sk = \"SK\"\n", "sk = \"SK\"\nentity_type = \"SK\"\n")],
            &["4:15: `table.entity_type` `SK` is also a key attribute"],
        ),
        ("empty prefix", &[("bookkeeping_prefix = \"tally#\"", "bookkeeping_prefix = \"\"")], &["4:22: `table.bookkeeping_prefix` must not be empty"]),
        ("empty ttl", &[("bookkeeping_prefix = \"tally#\"\n", "bookkeeping_prefix = \"tally#\"\nttl = \"\"\n")], &["5:7: `table.ttl` must not be empty"]),
        (
            "ttl is a key",
            &[("bookkeeping_prefix = \"tally#\"\n", "bookkeeping_prefix = \"tally#\"\nttl = \"PK\"\n")],
            &["5:7: `table.ttl` `PK` is also a key, the type attribute or an attribute tally writes itself"],
        ),
        (
            "an index twice, and one with an empty key",
            &[(
                "bookkeeping_prefix = \"tally#\"\n",
                "bookkeeping_prefix = \"tally#\"\nindexes = [{ name = \"GSI1\", pk = \"GSI1PK\" }, { name = \"GSI1\", pk = \"\" }]\n",
            )],
            &["5:68: an index's `pk` must not be empty", "5:55: index `GSI1` is declared twice"],
        ),
        (
            "a prefix that leaves a ledger's key no room",
            &[("bookkeeping_prefix = \"tally#\"", "bookkeeping_prefix = \"ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt#\"")],
            &["4:22: `table.bookkeeping_prefix` is 60 bytes: a ledger's key would then be up to 2051 bytes (`limits.source_pk_bytes` = 1984), over DynamoDB's 2048; shorten it or lower the limit"],
        ),
        (
            // A ledger's TTL written over its version: two writes in one second would pass each
            // other's conditions.
            "ttl is an attribute tally writes",
            &[("bookkeeping_prefix = \"tally#\"\n", "bookkeeping_prefix = \"tally#\"\nttl = \"version\"\n")],
            &["5:7: `table.ttl` `version` is also a key, the type attribute or an attribute tally writes itself"],
        ),
        (
            "an index on a field tally writes as a number",
            &[("bookkeeping_prefix = \"tally#\"\n", "bookkeeping_prefix = \"tally#\"\nindexes = [{ name = \"BY_COUNT\", pk = \"messages\" }]\n")],
            &["5:38: index `BY_COUNT`: `messages` is a number or a list tally writes on its own items, which DynamoDB refuses as a string key"],
        ),
        (
            "ttl is the entity-type attribute",
            &[("bookkeeping_prefix = \"tally#\"\n", "bookkeeping_prefix = \"tally#\"\nentity_type = \"kind\"\nttl = \"kind\"\n")],
            &["6:7: `table.ttl` `kind` is also a key, the type attribute or an attribute tally writes itself"],
        ),
        (
            "limits",
            &[("\n[aggregates.chat_stats]", "[limits]\nsource_pk_bytes = 5000\nsource_sk_bytes = 0\n\n[aggregates.chat_stats]")],
            &["6:19: `limits.source_pk_bytes` is 5000, over the 1984 tally's bookkeeping leaves room for", "7:19: `limits.source_sk_bytes` must be positive"],
        ),
        // Patterns.
        ("empty pattern", &[("sk = \"STATS\"", "sk = \"\"")], &["8:6: pattern ``: a key cannot be empty"]),
        ("unclosed capture", &[("MSG#{sentAt:datetime}", "MSG#{sentAt")], &["15:6: pattern `MSG#{sentAt`: `{` is not closed"]),
        ("stray brace", &[("sk = \"STATS\"", "sk = \"STATS}\"")], &["8:6: pattern `STATS}`: `}` closes nothing (write `}}` for a literal one)"]),
        (
            "bad capture name",
            &[("MSG#{sentAt:datetime}", "MSG#{sent-at:datetime}")],
            &["15:6: pattern `MSG#{sent-at:datetime}`: `sent-at` is not a capture name (a letter or `_`, then letters, digits or `_`)"],
        ),
        (
            "unknown capture type",
            &[("MSG#{sentAt:datetime}", "MSG#{sentAt:time}")],
            &["15:6: pattern `MSG#{sentAt:time}`: capture `sentAt` has unknown type `time` (expected `id`, `date` or `datetime`)"],
        ),
        (
            "adjacent captures",
            &[("MSG#{sentAt:datetime}", "MSG#{sentAt:datetime}{id}")],
            &["15:6: pattern `MSG#{sentAt:datetime}{id}`: captures `sentAt` and `id` need literal text between them"],
        ),
        ("repeated capture", &[("MSG#{sentAt:datetime}", "MSG#{conversationId}")], &["15:6: entity `message`: capture `conversationId` appears twice"]),
        (
            "bookkeeping prefix",
            &[("pk = \"CONV#{conversationId}\"\nsk = \"STATS\"", "pk = \"tally#{conversationId}\"\nsk = \"STATS\"")],
            &["7:6: pattern `tally#{conversationId}` starts with the bookkeeping prefix `tally#`"],
        ),
        (
            "datetime aggregate parameter",
            &[("sk = \"STATS\"", "sk = \"STATS#{at:datetime}\"")],
            &[
                "8:6: aggregate `chat_stats`: key parameter `at` is a datetime; aggregate keys take `id` or `date`",
                "21:6: aggregate `chat_stats` needs its key parameter `at` bound in `key`",
            ],
        ),
        // Aggregates.
        (
            "no fields",
            &[("counters = [\"messages\"]\nsums = [\"bytes\"]\naverages.meanBytes = { sum = \"bytes\", count = \"messages\", places = 2 }\n", "")],
            &[
                "6:13: aggregate `chat_stats` has no counters or sums",
                "20:9: aggregate `chat_stats` has no field `messages`",
                "20:23: aggregate `chat_stats` has no field `bytes`",
            ],
        ),
        ("repeated field", &[("sums = [\"bytes\"]", "sums = [\"bytes\", \"messages\"]")], &["10:18: aggregate `chat_stats` declares `messages` twice"]),
        (
            "reserved fields",
            &[("counters = [\"messages\"]", "counters = [\"messages\", \"PK\", \"updatedAt\"]")],
            &[
                "9:25: aggregate `chat_stats`: `PK` is an attribute tally writes itself",
                "9:31: aggregate `chat_stats`: `updatedAt` is an attribute tally writes itself",
            ],
        ),
        (
            "reserved version",
            &[("counters = [\"messages\"]", "counters = [\"messages\", \"version\"]")],
            &["9:25: aggregate `chat_stats`: `version` is an attribute tally writes itself"],
        ),
        ("average over a missing sum", &[("sum = \"bytes\"", "sum = \"byte\"")], &["11:30: average `meanBytes`: `byte` is not a sum of `chat_stats`"]),
        (
            "average over the wrong fields",
            &[("sum = \"bytes\", count = \"messages\"", "sum = \"messages\", count = \"bytes\"")],
            &[
                "11:30: average `meanBytes`: `messages` is not a sum of `chat_stats`",
                "11:50: average `meanBytes`: `bytes` is not a counter of `chat_stats`",
            ],
        ),
        ("average places", &[("places = 2", "places = 5")], &["11:68: average `meanBytes`: `places` is 5, expected 0 to 4"]),
        ("average named like a field", &[("averages.meanBytes", "averages.bytes")], &["11:10: aggregate `chat_stats` declares `bytes` twice"]),
        (
            "unfed aggregate",
            &[("\n[entities.message]", "[aggregates.daily]\npk = \"DAILY\"\nsk = \"{day:date}\"\ncounters = [\"messages\"]\n\n[entities.message]")],
            &["12:13: no entity contributes to aggregate `daily`"],
        ),
        // Entities and attributes.
        (
            "entity named like an aggregate",
            &[("[entities.message]", "[entities.chat_stats]"), ("[entities.message.attributes]", "[entities.chat_stats.attributes]"), ("[[entities.message.contributions]]", "[[entities.chat_stats.contributions]]")],
            &["13:11: `chat_stats` names both an entity and an aggregate"],
        ),
        (
            "matched by type without an entity-type attribute",
            &[("[entities.message]\n", "[entities.message]\nmatch = \"type\"\n")],
            &["14:9: entity `message` is matched by type, but `table.entity_type` is not set"],
        ),
        (
            "key attribute",
            &[("size = {", "SK = { type = \"string\" }\nsize = {")],
            &["18:1: entity `message`: `SK` is a key or the entity-type attribute; describe keys with `pk` and `sk`"],
        ),
        ("capture as attribute", &[("size = {", "sentAt = { type = \"datetime\" }\nsize = {")], &["18:1: entity `message`: `sentAt` is both a capture and an attribute"]),
        (
            "number constraints on a string",
            &[("size = {", "author = { type = \"id\", non_negative = true, max_digits = { integer = 1, fraction = 0 } }\nsize = {")],
            &[
                "18:40: attribute `author`: `non_negative` applies to numbers, not to `id`",
                "18:59: attribute `author`: `max_digits` applies to numbers, not to `id`",
            ],
        ),
        (
            "reason without the constraint",
            &[("non_negative = true,", "negative_reason = \"negative_size\",")],
            &["18:45: attribute `size`: `negative_reason` needs `non_negative = true`"],
        ),
        (
            "reason not snake_case",
            &[("non_negative = true,", "non_negative = true, negative_reason = \"Negative-Size\",")],
            &["18:66: attribute `size`: reason `Negative-Size` is not snake_case (a-z, 0-9 and `_`, starting with a letter)"],
        ),
        (
            "digit budget",
            &[("integer = 12, fraction = 0", "integer = 25, fraction = 4")],
            &["18:61: attribute `size`: `max_digits` allows 29 digits, over 28 (a sum of 10^10 values must fit DynamoDB's 38)"],
        ),
        (
            "unbounded sum",
            &[(", max_digits = { integer = 12, fraction = 0 }", "")],
            &["23:31: attribute `size` of entity `message` is summed but has no `max_digits`"],
        ),
        // Contributions.
        (
            "unknown aggregate",
            &[("to = \"chat_stats\"", "to = \"chat_stat\"")],
            &["21:6: unknown aggregate `chat_stat`", "6:13: no entity contributes to aggregate `chat_stats`"],
        ),
        ("repeated target", &[("to = \"chat_stats\"", "to = [\"chat_stats\", \"chat_stats\"]")], &["21:21: aggregate `chat_stats` is named twice in `to`"]),
        ("no target", &[("to = \"chat_stats\"", "to = []")], &["21:6: `to` names no aggregate", "6:13: no entity contributes to aggregate `chat_stats`"]),
        (
            "unknown capture or attribute",
            &[("conversationId = \"conversationId\"", "conversationId = \"conversation\"")],
            &["22:26: entity `message` has no capture or attribute `conversation`"],
        ),
        ("unbound parameter", &[("key = { conversationId = \"conversationId\" }", "key = {}")], &["21:6: aggregate `chat_stats` needs its key parameter `conversationId` bound in `key`"]),
        (
            "unused parameter",
            &[("key = { conversationId = \"conversationId\" }", "key = { conversationId = \"conversationId\", room = \"conversationId\" }")],
            &["22:44: no aggregate in `to` has the key parameter `room`"],
        ),
        (
            "parameter of the wrong type",
            &[("conversationId = \"conversationId\"", "conversationId = \"sentAt\"")],
            &["22:26: key parameter `conversationId` takes an id; `sentAt` is a date-time"],
        ),
        ("present, unknown", &[("add = {", "when = { present = \"colour\" }\nadd = {")], &["23:20: entity `message` has no attribute `colour`"]),
        ("present, of a capture", &[("add = {", "when = { present = \"sentAt\" }\nadd = {")], &["23:20: entity `message` has no attribute `sentAt`"]),
        ("equals, not text", &[("add = {", "when = { equals = { size = \"3\" } }\nadd = {")], &["23:21: `equals` compares text; `size` is a number"]),
        ("no amounts", &[("add = { messages = 1, bytes = \"size\" }", "add = {}")], &["23:7: `add` adds to no field"]),
        ("unknown field", &[("messages = 1,", "message = 1,")], &["23:9: aggregate `chat_stats` has no field `message`"]),
        ("counter adds 1", &[("messages = 1,", "messages = 2,")], &["23:20: `messages` of `chat_stats` is a counter: it adds 1"]),
        ("counter adds no attribute", &[("messages = 1,", "messages = \"size\",")], &["23:20: `messages` of `chat_stats` is a counter: it adds 1"]),
        ("sum adds an attribute", &[("bytes = \"size\"", "bytes = 1")], &["23:31: `bytes` of `chat_stats` is a sum: it adds a number attribute"]),
        ("average added to", &[("bytes = \"size\"", "bytes = \"size\", meanBytes = 1")], &["23:39: `meanBytes` of `chat_stats` is an average, which tally derives"]),
        (
            "sum of a string",
            &[("size = {", "author = { type = \"id\" }\nsize = {"), ("bytes = \"size\"", "bytes = \"author\"")],
            &["24:31: `author` is an id, not a number"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, edits, expected) in cases {
        let got = problems(&edited(edits));
        if got != *expected {
            failures.push(format!("{name}:\n  expected {expected:?}\n  got      {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_file_with_many_mistakes_gets_every_one() {
    let text = edited(&[
        ("to = \"chat_stats\"", "to = [\"chat_stats\", \"weekly\"]"),
        ("conversationId = \"conversationId\"", "conversationId = \"room\""),
        ("messages = 1,", "messages = 2, likes = 1,"),
        ("places = 2", "places = 9"),
    ]);
    let errors = Rules::from_toml(&text, "chat.toml").unwrap_err();
    assert_eq!(
        errors.to_string(),
        [
            "chat.toml:11:68: average `meanBytes`: `places` is 9, expected 0 to 4",
            "chat.toml:21:21: unknown aggregate `weekly`",
            "chat.toml:22:26: entity `message` has no capture or attribute `room`",
            "chat.toml:23:20: `messages` of `chat_stats` is a counter: it adds 1",
            "chat.toml:23:23: aggregate `chat_stats` has no field `likes`",
        ]
        .join("\n")
    );
}
