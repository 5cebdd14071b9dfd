//! Capacity units as DynamoDB bills them, estimated from item sizes.
//!
//! The service reports consumed capacity in its responses; DynamoDB Local's numbers are not
//! faithful (transactions and absent items), so the cost model is also computed from the
//! documented sizing rules: names and values in UTF-8 bytes, numbers 1 byte per two significant
//! digits plus 1, lists and maps 3 bytes plus 1 per element.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::SdkItem;

/// Approximate stored size of an item in bytes.
pub fn item_size(item: &SdkItem) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(text) => number_size(text),
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(values) => 3 + values.iter().map(|value| 1 + value_size(value)).sum::<usize>(),
        AttributeValue::M(values) => 3 + values.iter().map(|(name, value)| 1 + name.len() + value_size(value)).sum::<usize>(),
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(texts) => texts.iter().map(|text| number_size(text)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len()).sum(),
        _ => 0,
    }
}

fn number_size(text: &str) -> usize {
    let digits = text.parse::<aggregates::Number>().map(|number| number.significant_digits() as usize).unwrap_or(text.len());
    digits.div_ceil(2) + 1
}

/// Write units of one transactional write: 2 per KB, rounded up.
pub fn transactional_write_units(item: &SdkItem) -> u64 {
    2 * item_size(item).div_ceil(1024).max(1) as u64
}

/// Read units of one strongly consistent read: 1 per 4 KB, at least 1 even for an absent item.
pub fn consistent_read_units(item: Option<&SdkItem>) -> u64 {
    item.map_or(1, |item| item_size(item).div_ceil(4096).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_documented_rules() {
        let item: SdkItem = [
            ("pk".to_owned(), AttributeValue::S("course#c1".into())),
            ("n".to_owned(), AttributeValue::N("12345".into())),
            ("m".to_owned(), AttributeValue::M([("a".to_owned(), AttributeValue::Bool(true))].into())),
        ]
        .into();
        // pk: 2 + 9; n: 1 + (3 + 1); m: 1 + 3 + (1 + 1 + 1)
        assert_eq!(item_size(&item), 11 + 5 + 7);
        assert_eq!(transactional_write_units(&item), 2);
        assert_eq!(consistent_read_units(None), 1);
        let big: SdkItem = [("x".to_owned(), AttributeValue::S("y".repeat(5000)))].into();
        assert_eq!(transactional_write_units(&big), 10);
        assert_eq!(consistent_read_units(Some(&big)), 2);
    }
}
