//! A `tally seed`-style workload for the learning app (examples/rules/learning.toml): users
//! chat with a tutor. From a seed, a realistic history of writes: conversations are opened,
//! messages sent and answered (each answer bumping the conversation's `unreadCount`), read,
//! edited (a role corrected, tokens metered late, the denormalised `userId` dropped), deleted
//! one by one or with their conversation, and expired by TTL (`expiresAt`). Mixed in: invalid
//! images (a missing or mistyped role, negative or fractional counts, empty ids, keys of the
//! right form but a bad timestamp, keys over the limits) that later writes may fix, and items
//! no rule knows (settings, summaries).

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use serde_dynamo::Item;

use super::dice::Dice;
use super::workload::{item, n, s, Key, Workload, Writer};

#[derive(Debug, Clone)]
struct Message {
    sk: String,
    role: &'static str,
    tokens: Option<u32>,
    user: Option<String>,
    expires: Option<i64>,
    day: String,
}

#[derive(Debug, Clone)]
struct Conversation {
    user: String,
    id: String,
    unread: Option<u32>,
    expires: Option<i64>,
    messages: Vec<Message>,
}

struct App {
    dice: Dice,
    writer: Writer,
    users: Vec<String>,
    conversations: Vec<Conversation>,
    opened: usize,
    clock: DateTime<Utc>,
}

/// The history `seed` gives, of `ops` operations (each one to a few writes) after the users'
/// profiles are written; the second epoch starts halfway.
pub fn workload(seed: u64, ops: usize) -> Workload {
    let mut app = App {
        dice: Dice::new(seed),
        writer: Writer::new("PK", "SK", "1", 20, seed ^ 0x5eed),
        users: (1..=4).map(|i| format!("user-{}", 100 + i)).collect(),
        conversations: Vec::new(),
        opened: 0,
        clock: Utc.with_ymd_and_hms(2025, 12, 19, 21, 0, 0).single().expect("a valid start"),
    };
    for user in app.users.clone() {
        let created = app.timestamp();
        app.writer.put(profile(&user, &created));
    }
    let mut second_epoch = 0;
    for op in 0..ops {
        if op == ops / 2 {
            second_epoch = app.writer.len();
        }
        app.operation();
    }
    app.writer.finish(second_epoch)
}

fn profile(user: &str, created: &str) -> Item {
    item(vec![("PK", s(format!("USER#{user}"))), ("SK", s("PROFILE")), ("createdAt", s(created)), ("name", s("Ada"))])
}

impl Conversation {
    fn key(&self) -> Key {
        (format!("USER#{}", self.user), format!("CONV#{}", self.id))
    }

    fn image(&self) -> Item {
        let (pk, sk) = self.key();
        let mut image = item(vec![("PK", s(pk)), ("SK", s(sk)), ("title", s("Fractions, again"))]);
        if let Some(unread) = self.unread {
            image.insert("unreadCount".into(), n(unread));
        }
        if let Some(expires) = self.expires {
            image.insert("expiresAt".into(), n(expires));
        }
        image
    }

    fn message_key(&self, message: &Message) -> Key {
        (format!("CONV#{}", self.id), message.sk.clone())
    }

    fn message_image(&self, message: &Message) -> Item {
        let (pk, sk) = self.message_key(message);
        let mut image = item(vec![
            ("PK", s(pk)),
            ("SK", s(sk)),
            ("role", s(message.role)),
            ("GSI1PK", s(format!("DATE#{}", message.day))),
            ("content", s("What is 3/4 of 12?")),
        ]);
        if let Some(tokens) = message.tokens {
            image.insert("tokens".into(), n(tokens));
        }
        if let Some(user) = &message.user {
            image.insert("userId".into(), s(user));
        }
        if let Some(expires) = message.expires {
            image.insert("expiresAt".into(), n(expires));
        }
        image
    }
}

impl App {
    /// The next instant, as one of the forms clients write (mostly `…T10:30:00.000Z`; some
    /// with an offset, which can put the UTC day on the other side of midnight; some with
    /// none, which is UTC).
    fn timestamp(&mut self) -> String {
        self.clock += Duration::seconds(self.dice.between(20, 2_700) as i64) + Duration::milliseconds(self.dice.below(1000) as i64);
        let at = self.clock;
        let offset = |hours_times_2: i32| FixedOffset::east_opt(hours_times_2 * 1800).expect("a valid offset");
        match self.dice.below(10) {
            0..=5 => at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            6 => at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            7 => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            8 => at.with_timezone(&offset(11)).format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
            _ => at.with_timezone(&offset(-16)).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        }
    }

    fn conversation(&mut self) -> Option<usize> {
        (!self.conversations.is_empty()).then(|| self.dice.below(self.conversations.len()))
    }

    fn operation(&mut self) {
        match self.dice.below(100) {
            0..=9 => self.open(),
            10..=47 => match self.conversation() {
                Some(c) => self.exchange(c),
                None => self.open(),
            },
            48..=55 => self.read(),
            56..=63 => self.edit(),
            64..=68 => self.delete_message(),
            69..=74 => self.expire(),
            75..=77 => self.delete_conversation(),
            78..=90 => self.invalid(),
            91..=95 => self.unknown(),
            _ => {
                let user = self.dice.pick(&self.users).clone();
                let created = if self.dice.chance(30) { "last spring".to_owned() } else { self.timestamp() };
                self.writer.put(profile(&user, &created));
            }
        }
    }

    fn open(&mut self) {
        self.opened += 1;
        let user = self.dice.pick(&self.users).clone();
        // Ephemeral chats expire after a week: DynamoDB's TTL sweeper deletes them.
        let expires = self.dice.chance(25).then(|| self.clock.timestamp() + 7 * 86_400);
        let unread = if self.dice.chance(50) { Some(0) } else { None };
        let conversation = Conversation { user, id: format!("conv-{}", self.opened), unread, expires, messages: Vec::new() };
        self.writer.put(conversation.image());
        self.conversations.push(conversation);
    }

    fn new_message(&mut self, c: usize, role: &'static str) -> Message {
        let text = self.timestamp();
        let day = self.clock.date_naive().to_string();
        let conversation = &self.conversations[c];
        let tokens = (role == "assistant" || self.dice.chance(20)).then(|| self.dice.between(1, 4_000) as u32);
        let user = self.dice.chance(90).then(|| conversation.user.clone());
        let expires = conversation.expires.or_else(|| self.dice.chance(10).then(|| self.clock.timestamp() + 30 * 86_400));
        Message { sk: format!("MSG#{text}"), role, tokens, user, expires, day }
    }

    /// The user asks; usually the tutor answers, and the conversation's unread count grows.
    fn exchange(&mut self, c: usize) {
        let role = if self.dice.chance(5) { "system" } else { "user" };
        let asked = self.new_message(c, role);
        self.writer.put(self.conversations[c].message_image(&asked));
        self.conversations[c].messages.push(asked);
        if self.dice.chance(80) {
            let answer = self.new_message(c, "assistant");
            self.writer.put(self.conversations[c].message_image(&answer));
            self.conversations[c].messages.push(answer);
            let conversation = &mut self.conversations[c];
            conversation.unread = Some(conversation.unread.unwrap_or(0) + 1);
            self.writer.put(conversation.image());
        }
    }

    fn read(&mut self) {
        let Some(c) = self.conversation() else { return };
        self.conversations[c].unread = Some(0);
        self.writer.put(self.conversations[c].image());
    }

    /// A message and its conversation, at random.
    fn message(&mut self) -> Option<(usize, usize)> {
        let c = self.conversation()?;
        let count = self.conversations[c].messages.len();
        (count > 0).then(|| (c, self.dice.below(count)))
    }

    /// Changes a message so that it moves between aggregates, or rewrites it valid again.
    fn edit(&mut self) {
        let Some((c, m)) = self.message() else { return };
        let change = self.dice.below(5);
        let tokens = self.dice.between(1, 900) as u32;
        let message = &mut self.conversations[c].messages[m];
        match change {
            0 => message.role = if message.role == "user" { "assistant" } else { "user" },
            1 => message.tokens = Some(tokens),
            2 => message.tokens = None,
            3 => message.user = None,
            _ => {}
        }
        let message = message.clone();
        self.writer.put(self.conversations[c].message_image(&message));
    }

    fn delete_message(&mut self) {
        let Some((c, m)) = self.message() else { return };
        let message = self.conversations[c].messages.remove(m);
        self.writer.delete(&self.conversations[c].message_key(&message), false);
    }

    /// DynamoDB's TTL sweeper deletes an expired message or conversation (its messages stay,
    /// to expire on their own).
    fn expire(&mut self) {
        let Some(c) = self.conversation() else { return };
        let conversation = &mut self.conversations[c];
        if let Some(m) = conversation.messages.iter().position(|message| message.expires.is_some()) {
            let message = conversation.messages.remove(m);
            let key = conversation.message_key(&message);
            self.writer.delete(&key, true);
        } else if conversation.expires.is_some() {
            let conversation = self.conversations.remove(c);
            self.writer.delete(&conversation.key(), true);
        }
    }

    /// The user deletes a conversation: the app deletes it and its messages.
    fn delete_conversation(&mut self) {
        let Some(c) = self.conversation() else { return };
        let conversation = self.conversations.remove(c);
        self.writer.delete(&conversation.key(), false);
        for message in &conversation.messages {
            self.writer.delete(&conversation.message_key(message), false);
        }
    }

    /// An image no rule accepts: written over a valid item (a later edit fixes it) or as an
    /// item of its own.
    fn invalid(&mut self) {
        let kind = self.dice.below(13);
        if kind >= 10 {
            let Some(c) = self.conversation() else { return };
            let mut image = self.conversations[c].image();
            image.insert("unreadCount".into(), [n(-1), n("2.5"), s("3")][kind - 10].clone());
            self.writer.put(image);
            return;
        }
        let Some((c, m)) = self.message() else { return };
        let conversation = &self.conversations[c];
        let mut image = conversation.message_image(&conversation.messages[m]);
        match kind {
            0 => {
                image.remove("role");
            }
            1 => {
                image.insert("role".into(), n(1));
            }
            2 => {
                image.insert("role".into(), s(""));
            }
            3 => {
                image.insert("tokens".into(), n(-5));
            }
            4 => {
                image.insert("tokens".into(), n("1.5"));
            }
            5 => {
                image.insert("tokens".into(), s("12"));
            }
            6 => {
                image.insert("tokens".into(), n("9".repeat(39)));
            }
            7 => {
                image.insert("userId".into(), s(""));
            }
            // `USER#` + 2,044 bytes: user_stats' PK would be 2,049 bytes, over DynamoDB's 2,048.
            8 => {
                image.insert("userId".into(), s("u".repeat(2_044)));
            }
            _ => {
                // Items of their own, of a message's form but invalid: a timestamp that is not
                // ISO 8601, or a conversation id that makes the PK longer than tally accepts.
                if self.dice.chance(50) {
                    image.insert("SK".into(), s(*self.dice.pick(&["MSG#yesterday", "MSG#2025-12-20 10:30", "MSG#2025-13-01T00:00:00Z"])));
                } else {
                    image.insert("PK".into(), s(format!("CONV#{}", "c".repeat(2_000))));
                }
            }
        }
        self.writer.put(image);
    }

    /// Items the rules do not know: skipped and counted, whatever they hold.
    fn unknown(&mut self) {
        let user = self.dice.pick(&self.users).clone();
        let image = match self.dice.below(4) {
            0 => item(vec![("PK", s(format!("USER#{user}"))), ("SK", s("SETTINGS")), ("theme", s("dark"))]),
            1 => item(vec![("PK", s("CONV#conv-1")), ("SK", s("SUMMARY")), ("tokens", n(self.dice.below(99)))]),
            // An empty id: of no entity's form.
            2 => item(vec![("PK", s(format!("USER#{user}"))), ("SK", s("CONV#")), ("unreadCount", n(4))]),
            _ => item(vec![("PK", s("DATE#2025-12-20")), ("SK", s("INDEX")), ("role", s("user"))]),
        };
        self.writer.put(image);
    }
}
