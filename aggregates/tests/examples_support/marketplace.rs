//! A `tally seed`-style workload for the marketplace (examples/rules/marketplace.toml). From a
//! seed, a realistic history: vendors list products and change their status and price;
//! customers check out (a pending order with a one-hour `ttl`), pay, and the order is shipped,
//! delivered or cancelled, or the checkout is abandoned and TTL deletes it; support corrects an
//! order's vendor, amount or date (moving it between daily items); customers review products,
//! edit and delete reviews, and keep favourites (written without `Type` by the wishlist
//! service). Mixed in: invalid images (bad dates, amounts as strings, sub-cent amounts, half
//! stars, a non-string `Type`, keys over the file's 512-byte limit), a legacy client that
//! overwrites orders without `Type`, and items no rule knows.

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use serde_dynamo::Item;

use super::dice::Dice;
use super::workload::{item, n, s, Key, Workload, Writer};

#[derive(Debug, Clone)]
struct Product {
    vendor: String,
    id: String,
    status: &'static str,
    cents: u64,
}

#[derive(Debug, Clone)]
struct Order {
    id: String,
    vendor: String,
    customer: String,
    cents: u64,
    ordered_at: String,
    status: &'static str,
    ttl: Option<i64>,
}

#[derive(Debug, Clone)]
struct Review {
    product: String,
    id: String,
    rating: u8,
    customer: String,
}

struct Market {
    dice: Dice,
    writer: Writer,
    vendors: Vec<String>,
    customers: Vec<String>,
    products: Vec<Product>,
    orders: Vec<Order>,
    reviews: Vec<Review>,
    favourites: Vec<(String, String)>,
    made: usize,
    clock: DateTime<Utc>,
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The history `seed` gives, of `ops` operations after the vendors and a first catalogue are
/// written; the second epoch starts halfway.
pub fn workload(seed: u64, ops: usize) -> Workload {
    let mut market = Market {
        dice: Dice::new(seed),
        // 40-digit sequence numbers: past u128, compared as the university contract says.
        writer: Writer::new("PK", "SK", "4", 39, seed ^ 0x3a11),
        vendors: vec!["456".into(), "457".into(), "458".into()],
        customers: (1..=5).map(|i| format!("cust-{i}")).collect(),
        products: Vec::new(),
        orders: Vec::new(),
        reviews: Vec::new(),
        favourites: Vec::new(),
        made: 0,
        clock: Utc.with_ymd_and_hms(2025, 12, 19, 20, 0, 0).single().expect("a valid start"),
    };
    for vendor in market.vendors.clone() {
        market.writer.put(vendor_profile(&vendor, "Acme"));
    }
    for _ in 0..4 {
        market.new_product();
    }
    let mut second_epoch = 0;
    for op in 0..ops {
        if op == ops / 2 {
            second_epoch = market.writer.len();
        }
        market.operation();
    }
    market.writer.finish(second_epoch)
}

fn vendor_profile(vendor: &str, name: &str) -> Item {
    item(vec![("PK", s(format!("VENDOR#{vendor}"))), ("SK", s("METADATA")), ("Type", s("Vendor")), ("name", s(name))])
}

impl Product {
    fn image(&self) -> Item {
        item(vec![
            ("PK", s(format!("VENDOR#{}", self.vendor))),
            ("SK", s(format!("PRODUCT#{}", self.id))),
            ("Type", s("Product")),
            ("status", s(self.status)),
            ("price", n(money(self.cents))),
            ("GSI1PK", s(format!("PRODUCT#{}", self.id))),
            ("GSI1SK", s(format!("PRODUCT#{}", self.id))),
        ])
    }
}

impl Order {
    fn key(&self) -> Key {
        (format!("ORDER#{}", self.id), "METADATA".to_owned())
    }

    fn image(&self) -> Item {
        let mut image = item(vec![
            ("PK", s(format!("ORDER#{}", self.id))),
            ("SK", s("METADATA")),
            ("Type", s("Order")),
            ("vendorId", s(&self.vendor)),
            ("customerId", s(&self.customer)),
            ("amount", n(money(self.cents))),
            ("orderedAt", s(&self.ordered_at)),
            ("status", s(self.status)),
            ("GSI1PK", s(format!("CUSTOMER#{}", self.customer))),
            ("GSI1SK", s(format!("ORDER#{}", self.ordered_at))),
            ("GSI2PK", s(format!("VENDOR#{}", self.vendor))),
            ("GSI2SK", s(format!("ORDER#{}", self.ordered_at))),
        ]);
        if let Some(ttl) = self.ttl {
            image.insert("ttl".into(), n(ttl));
        }
        image
    }
}

impl Review {
    fn key(&self) -> Key {
        (format!("PRODUCT#{}", self.product), format!("REVIEW#{}", self.id))
    }

    fn image(&self) -> Item {
        let (pk, sk) = self.key();
        item(vec![
            ("PK", s(pk)),
            ("SK", s(sk)),
            ("Type", s("Review")),
            ("rating", n(self.rating)),
            ("customerId", s(&self.customer)),
            ("createdAt", s("2025-12-20T10:30:00.000Z")),
            ("GSI1PK", s(format!("CUSTOMER#{}", self.customer))),
            ("GSI1SK", s(format!("REVIEW#{}", self.id))),
        ])
    }
}

fn favourite_key(customer: &str, product: &str) -> Key {
    (format!("CUSTOMER#{customer}"), format!("FAV#{product}"))
}

impl Market {
    fn id(&mut self) -> usize {
        self.made += 1;
        self.made
    }

    /// The next instant, in one of the forms clients write (see learning.rs).
    fn timestamp(&mut self) -> String {
        self.clock += Duration::seconds(self.dice.between(60, 5_400) as i64);
        let at = self.clock;
        let offset = |half_hours: i32| FixedOffset::east_opt(half_hours * 1800).expect("a valid offset");
        match self.dice.below(10) {
            0..=5 => at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            6 => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            7 => at.with_timezone(&offset(2)).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            _ => at.with_timezone(&offset(-10)).format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        }
    }

    fn index<T>(&mut self, items: &[T]) -> Option<usize> {
        (!items.is_empty()).then(|| self.dice.below(items.len()))
    }

    fn operation(&mut self) {
        match self.dice.below(100) {
            0..=6 => self.new_product(),
            7..=12 => self.change_product(),
            13..=30 => self.checkout(),
            31..=44 => self.advance_order(),
            45..=49 => self.abandon_checkout(),
            50..=54 => self.correct_order(),
            55..=65 => self.review(),
            66..=75 => self.favourite(),
            76..=90 => self.invalid(),
            91..=95 => self.unknown(),
            _ => {
                let vendor = self.dice.pick(&self.vendors).clone();
                self.writer.put(vendor_profile(&vendor, "Acme & Sons"));
            }
        }
    }

    fn new_product(&mut self) {
        let id = self.id();
        let product = Product {
            vendor: self.dice.pick(&self.vendors).clone(),
            id: format!("{}", 700 + id),
            status: ["draft", "active", "active"][self.dice.below(3)],
            cents: self.dice.between(99, 25_000) as u64,
        };
        self.writer.put(product.image());
        self.products.push(product);
    }

    fn change_product(&mut self) {
        let Some(p) = self.index(&self.products.clone()) else { return };
        match self.dice.below(4) {
            0 => {
                let product = self.products.remove(p);
                self.writer.delete(&self.writer.key_of(&product.image()), false);
            }
            1 => {
                self.products[p].cents = self.dice.between(99, 25_000) as u64;
                self.writer.put(self.products[p].image());
            }
            _ => {
                let product = &mut self.products[p];
                product.status = match product.status {
                    "draft" => "active",
                    "active" => "discontinued",
                    _ => "active",
                };
                self.writer.put(self.products[p].image());
            }
        }
    }

    /// A checkout: a pending order that TTL deletes in an hour unless it is paid.
    fn checkout(&mut self) {
        let Some(p) = self.index(&self.products.clone()) else { return };
        let id = self.id();
        let ordered_at = self.timestamp();
        let order = Order {
            id: format!("{}", 300 + id),
            vendor: self.products[p].vendor.clone(),
            customer: self.dice.pick(&self.customers).clone(),
            cents: self.products[p].cents * self.dice.between(1, 3) as u64,
            ordered_at,
            status: "pending",
            ttl: Some(self.clock.timestamp() + 3_600),
        };
        self.writer.put(order.image());
        self.orders.push(order);
    }

    fn advance_order(&mut self) {
        let Some(o) = self.index(&self.orders.clone()) else { return };
        let cancel = self.dice.chance(12);
        let order = &mut self.orders[o];
        order.status = match (order.status, cancel) {
            ("delivered", _) => return,
            (_, true) => "cancelled",
            ("pending", _) => "placed",
            ("placed", _) => "shipped",
            ("shipped", _) => "delivered",
            (status, _) => status,
        };
        order.ttl = None;
        self.writer.put(self.orders[o].image());
    }

    fn abandon_checkout(&mut self) {
        let Some(o) = self.orders.iter().position(|order| order.ttl.is_some()) else { return };
        let order = self.orders.remove(o);
        self.writer.delete(&order.key(), true);
    }

    /// Support corrects an order: its vendor, its amount (a partial refund) or its date.
    fn correct_order(&mut self) {
        let Some(o) = self.index(&self.orders.clone()) else { return };
        let vendor = self.dice.pick(&self.vendors).clone();
        let ordered_at = self.timestamp();
        let order = &mut self.orders[o];
        match self.dice.below(3) {
            0 => order.vendor = vendor,
            1 => order.cents = order.cents.saturating_sub(250).max(1),
            _ => order.ordered_at = ordered_at,
        }
        self.writer.put(self.orders[o].image());
    }

    fn review(&mut self) {
        match (self.dice.below(4), self.index(&self.reviews.clone())) {
            (0, Some(r)) => {
                let review = self.reviews.remove(r);
                self.writer.delete(&review.key(), false);
            }
            (1, Some(r)) => {
                self.reviews[r].rating = self.dice.between(1, 5) as u8;
                self.writer.put(self.reviews[r].image());
            }
            _ => {
                let Some(p) = self.index(&self.products.clone()) else { return };
                let id = self.id();
                let review = Review {
                    product: self.products[p].id.clone(),
                    id: format!("rev-{id}"),
                    rating: self.dice.between(1, 5) as u8,
                    customer: self.dice.pick(&self.customers).clone(),
                };
                self.writer.put(review.image());
                self.reviews.push(review);
            }
        }
    }

    /// The wishlist service writes favourites without `Type` (once in a while with one: they
    /// are still matched by their keys).
    fn favourite(&mut self) {
        if let (true, Some(f)) = (self.dice.chance(35), self.index(&self.favourites.clone())) {
            let (customer, product) = self.favourites.remove(f);
            self.writer.delete(&favourite_key(&customer, &product), false);
            return;
        }
        let Some(p) = self.index(&self.products.clone()) else { return };
        let customer = self.dice.pick(&self.customers).clone();
        let product = self.products[p].id.clone();
        let (pk, sk) = favourite_key(&customer, &product);
        let mut image = item(vec![("PK", s(pk)), ("SK", s(sk)), ("addedAt", s(self.timestamp()))]);
        if self.dice.chance(10) {
            image.insert("Type".into(), s("Favourite"));
        }
        if !self.favourites.contains(&(customer.clone(), product.clone())) {
            self.favourites.push((customer, product));
        }
        self.writer.put(image);
    }

    /// An image no rule accepts, over a valid item (the next write fixes it) or of its own.
    fn invalid(&mut self) {
        let kind = self.dice.below(16);
        if kind >= 12 {
            let Some(r) = self.index(&self.reviews.clone()) else { return };
            let mut image = self.reviews[r].image();
            match kind {
                12 => image.insert("rating".into(), n("4.5")),
                13 => image.insert("rating".into(), s("5")),
                14 => image.insert("rating".into(), n(-1)),
                _ => image.remove("customerId"),
            };
            self.writer.put(image);
            return;
        }
        if kind >= 10 {
            let Some(p) = self.index(&self.products.clone()) else { return };
            let mut image = self.products[p].image();
            match kind {
                10 => image.insert("price".into(), n("-1.00")),
                _ => image.remove("status"),
            };
            self.writer.put(image);
            return;
        }
        let Some(o) = self.index(&self.orders.clone()) else { return };
        let mut image = self.orders[o].image();
        match kind {
            0 => {
                image.insert("orderedAt".into(), s("last week"));
            }
            1 => {
                image.insert("amount".into(), s("19.99"));
            }
            2 => {
                image.insert("amount".into(), n("19.999"));
            }
            3 => {
                image.insert("amount".into(), n("-5"));
            }
            4 => {
                image.remove("vendorId");
            }
            5 => {
                image.insert("customerId".into(), s(""));
            }
            6 => {
                image.insert("Type".into(), n(3));
            }
            // A legacy client rewrites the order without `Type`: no entity, so its sales are
            // retracted until the next write restores it.
            7 => {
                image.remove("Type");
            }
            // Items of their own: an order's type with another key shape, and a review whose
            // product id makes the PK longer than the file's 512 bytes.
            8 => {
                image.insert("SK".into(), s("META"));
            }
            _ => {
                image = item(vec![
                    ("PK", s(format!("PRODUCT#{}", "p".repeat(600)))),
                    ("SK", s("REVIEW#rev-long")),
                    ("Type", s("Review")),
                    ("rating", n(5)),
                    ("customerId", s("cust-1")),
                ]);
            }
        }
        self.writer.put(image);
    }

    /// Items the rules do not know: skipped and counted.
    fn unknown(&mut self) {
        let customer = self.dice.pick(&self.customers).clone();
        let id = self.id();
        let image = match self.dice.below(4) {
            0 => item(vec![("PK", s(format!("COUPON#xmas-{id}"))), ("SK", s("METADATA")), ("Type", s("Coupon")), ("amount", n(5))]),
            1 => item(vec![("PK", s(format!("CUSTOMER#{customer}"))), ("SK", s("CART")), ("items", n(2))]),
            // A favourite's form with an empty product id: of no entity's form.
            2 => item(vec![("PK", s(format!("CUSTOMER#{customer}"))), ("SK", s("FAV#"))]),
            _ => item(vec![("PK", s(format!("CUSTOMER#{customer}"))), ("SK", s("PROFILE")), ("email", s("c@example.com"))]),
        };
        self.writer.put(image);
    }
}
