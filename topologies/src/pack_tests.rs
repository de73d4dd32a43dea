//! `pack` against `rmp_serde`: the values packed by hand must be the bytes serde writes for
//! them, or the state's format would depend on which of the two wrote a value.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::aggregates::{OrderTotals, Seen, SeqSet, SkuDay, StoreDay, Unmatched};
use crate::books::{PostedLine, PostingBook};
use crate::codec;
use crate::drift::{AlertState, Phase};
use crate::lineage::Arrival;
use crate::model::{DayClose, Fulfillment, MovementReason, PosLine, PosTransaction, Tender};

/// Amounts of every width: mantissas of every integer encoding, positive and negative, and
/// mantissas beyond 64 bits (stored as text).
fn amount() -> impl Strategy<Value = Decimal> {
    let mantissa = prop_oneof![
        -40i64..200,
        any::<i8>().prop_map(i64::from),
        any::<i16>().prop_map(i64::from),
        any::<i32>().prop_map(i64::from),
        any::<i64>(),
    ];
    prop_oneof![
        4 => (mantissa, 0u32..=28).prop_map(|(m, scale)| Decimal::new(m, scale)),
        1 => (any::<i128>(), 0u32..=28).prop_map(|(m, scale)| {
            Decimal::try_from_i128_with_scale(m % 79_228_162_514_264_337_593_543_950_335, scale).unwrap()
        }),
    ]
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, any::<u16>().prop_map(u64::from), any::<u32>().prop_map(u64::from), any::<u64>()]
}

fn signed() -> impl Strategy<Value = i64> {
    prop_oneof![-300i64..300, any::<i32>().prop_map(i64::from), any::<i64>()]
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (-4_000_000_000_000i64..8_000_000_000_000_000).prop_map(|micros| DateTime::from_timestamp_micros(micros).unwrap())
}

/// Names of every string width: fixstr, str8 and str16.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[A-Za-z0-9_-]{0,12}", 1 => "[a-z]{28,40}", 1 => "x{250,300}"]
}

fn reasons() -> impl Strategy<Value = BTreeMap<MovementReason, Decimal>> {
    btree_map(proptest::sample::select(MovementReason::ALL.to_vec()), amount(), 0..=MovementReason::ALL.len())
}

fn fulfillments() -> impl Strategy<Value = BTreeMap<Fulfillment, Decimal>> {
    btree_map(proptest::sample::select(Fulfillment::ALL.to_vec()), amount(), 0..=3)
}

fn alert() -> impl Strategy<Value = AlertState> {
    let phase = proptest::sample::select(vec![Phase::Ok, Phase::Pending, Phase::Firing, Phase::Resolved, Phase::Final]);
    (phase, proptest::option::of(time()), any::<u32>(), proptest::option::of(amount())).prop_map(
        |(phase, over_since, revision, sent_drift_units)| AlertState { phase, over_since, revision, sent_drift_units },
    )
}

fn unmatched() -> impl Strategy<Value = Unmatched> {
    (time(), name(), proptest::option::of(amount())).prop_map(|(at, id, order_units)| Unmatched { at, id, order_units })
}

fn posted() -> impl Strategy<Value = PostedLine> {
    [amount(), amount(), amount(), amount(), amount()].prop_map(|[qty, gross, discount, net, tax]| PostedLine {
        qty,
        gross,
        discount,
        net,
        tax,
    })
}

fn sku_day() -> impl Strategy<Value = SkuDay> {
    // Up to 20 unmatched ids crosses the fixarray bound (16).
    (vec(amount(), 7), reasons(), alert(), vec(unmatched(), 0..20), posted(), fulfillments()).prop_map(
        |(amounts, inventory, alert, unmatched, posted, orders)| SkuDay {
            sold_units: amounts[0],
            returned_units: amounts[1],
            restocked_units: amounts[2],
            gross: amounts[3],
            discount: amounts[4],
            net: amounts[5],
            tax: amounts[6],
            inventory,
            alert,
            unmatched,
            posted,
            orders,
        },
    )
}

fn seq_set() -> impl Strategy<Value = SeqSet> {
    vec((count(), count()), 0..18).prop_map(SeqSet)
}

fn day_close() -> impl Strategy<Value = DayClose> {
    (name(), count(), amount(), amount(), vec((name(), amount()), 0..3)).prop_map(|(id, count, net, tax, tenders)| {
        DayClose {
            id,
            store: "0042".into(),
            business_day: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            occurred_at: DateTime::<FixedOffset>::parse_from_rfc3339("2026-11-28T02:10:00-05:00").unwrap(),
            transaction_count: count,
            net_sales: net,
            tax,
            tenders: tenders.into_iter().map(|(kind, amount)| Tender { kind, amount }).collect(),
        }
    })
}

fn posting_book() -> impl Strategy<Value = PostingBook> {
    let figures = (any::<u32>(), any::<bool>(), proptest::option::of(time()), signed(), signed());
    (figures, amount(), amount(), btree_map(name(), amount(), 0..4)).prop_map(
        |((seq, final_sent, dirty_since, transactions, lines), net, tax, tenders)| PostingBook {
            seq,
            final_sent,
            dirty_since,
            transactions,
            lines,
            net,
            tax,
            tenders,
        },
    )
}

fn store_day() -> impl Strategy<Value = StoreDay> {
    let figures = (proptest::option::of(name()), signed(), signed(), vec(amount(), 4), count(), count());
    let maps = (btree_map(name(), amount(), 0..18), btree_map(name(), seq_set(), 0..18), reasons());
    let rest = (proptest::option::of(day_close()), any::<bool>(), posting_book(), count(), fulfillments());
    (figures, maps, rest).prop_map(
        |(
            (currency, transactions, lines, amounts, duplicates, conflicts),
            (tenders, registers, inventory),
            (day_close, finalized, posting, orders_count, order_units),
        )| StoreDay {
            currency,
            transactions,
            lines,
            gross: amounts[0],
            discount: amounts[1],
            net: amounts[2],
            tax: amounts[3],
            tenders,
            registers,
            inventory,
            duplicates,
            conflicts,
            day_close,
            finalized,
            posting,
            orders: OrderTotals { count: orders_count, units: order_units },
        },
    )
}

/// Times with an offset across the years chrono writes with a sign (before 0, after 9999), with
/// fractions of each width, offsets with seconds, and leap seconds.
fn time_with_offset() -> impl Strategy<Value = DateTime<FixedOffset>> {
    let nanos = prop_oneof![
        Just(0u32),
        (0u32..1000).prop_map(|ms| ms * 1_000_000),
        (0u32..1_000_000).prop_map(|us| us * 1_000),
        0u32..1_000_000_000
    ];
    let offset = prop_oneof![4 => (-1439i32..=1439).prop_map(|minutes| minutes * 60), 1 => -86_399i32..=86_399];
    let second = prop_oneof![9 => -70_000_000_000i64..300_000_000_000, 1 => Just(1_483_228_799i64)];
    (second, nanos, offset, any::<bool>()).prop_map(|(second, nanos, offset, leap)| {
        // A leap second is the last second of a minute with a fraction of 1 s or more.
        let nanos = if leap && second.rem_euclid(60) == 59 { nanos % 1_000_000_000 + 1_000_000_000 } else { nanos };
        let utc =
            DateTime::from_timestamp(second, nanos).unwrap_or_else(|| DateTime::from_timestamp(second, 0).unwrap());
        utc.with_timezone(&FixedOffset::east_opt(offset).unwrap())
    })
}

fn optional_name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(name())
}

fn pos_line() -> impl Strategy<Value = PosLine> {
    let ids = (proptest::option::of(count()), name(), any::<bool>(), optional_name());
    (ids, [amount(), amount(), amount(), amount()]).prop_map(
        |((line, sku, restock, return_of), [qty, unit_price, discount, tax])| PosLine {
            line,
            sku,
            qty,
            unit_price,
            discount,
            tax,
            restock,
            return_of,
        },
    )
}

fn transaction() -> impl Strategy<Value = PosTransaction> {
    let ids = (name(), name(), optional_name(), proptest::option::of(count()), optional_name());
    let tenders = vec((name(), amount()).prop_map(|(kind, amount)| Tender { kind, amount }), 0..3);
    (ids, time_with_offset(), vec(pos_line(), 0..18), tenders).prop_map(
        |((id, store, register, seq, voids), occurred_at, lines, tenders)| PosTransaction {
            id,
            store,
            register,
            seq,
            business_day: occurred_at.date_naive(),
            occurred_at,
            currency: "USD".into(),
            lines,
            tenders,
            voids,
        },
    )
}

fn arrival() -> impl Strategy<Value = Arrival> {
    let counts = (count(), any::<u8>(), any::<u32>(), proptest::option::of(count()));
    let names = (optional_name(), optional_name(), optional_name(), optional_name());
    (counts, time(), names).prop_map(
        |(
            (stream_seq, record_type, duplicates, last_duplicate_seq),
            at,
            (traceparent, msg_id, voids, booked_period),
        )| {
            Arrival {
                stream_seq,
                at,
                record_type,
                traceparent,
                msg_id,
                duplicates,
                last_duplicate_seq,
                voids,
                booked_period,
            }
        },
    )
}

fn seen() -> impl Strategy<Value = Seen> {
    let parts =
        (proptest::option::of(transaction()), optional_name(), proptest::option::of(arrival()), vec(name(), 0..3));
    (any::<u64>(), time_with_offset(), parts).prop_map(
        |(fingerprint, day, (transaction, voided_by, arrival, order_skus))| Seen {
            fingerprint,
            business_day: day.date_naive(),
            transaction,
            voided_by,
            arrival,
            order_skus,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    // Proves a dedupe entry (with its transaction, its arrival, an order's skus) packs to the
    // bytes serde writes.
    #[test]
    fn a_dedupe_entry_packs_to_serdes_bytes(value in seen()) {
        let packed = codec::encode(&value);
        prop_assert_eq!(&packed, &rmp_serde::to_vec(&value).unwrap());
        // What it reads back as packs as serde writes it too. Not always to the same bytes, nor
        // always readable: chrono's text rounds an offset's seconds away (`+00:00:01` reads back
        // as UTC, then written `Z`), and chrono does not read back every time it writes at the
        // edges of its range. A decoded record has neither.
        if let Ok(back) = codec::decode::<Seen>(&packed) {
            prop_assert_eq!(codec::encode(&back), rmp_serde::to_vec(&back).unwrap());
        }
    }

    // Proves an amount's text is what rust_decimal's serde writes, negative zero included.
    #[test]
    fn amounts_as_text_pack_as_rust_decimal_writes_them(value in amount(), negative in any::<bool>()) {
        let mut value = value;
        value.set_sign_negative(negative);
        for amount in [value, value.normalize()] {
            let mut packed = Vec::new();
            codec::Packer(&mut packed).decimal_text(&amount);
            prop_assert_eq!(packed, rmp_serde::to_vec(&amount).unwrap(), "{:?}", amount);
        }
    }

    // Proves days and times are written as chrono writes them, over every year chrono takes.
    #[test]
    fn days_and_times_pack_as_chrono_writes_them(at in time_with_offset(), days in any::<i32>()) {
        let (mut time, mut day) = (Vec::new(), Vec::new());
        codec::Packer(&mut time).time_text(&at);
        prop_assert_eq!(time, rmp_serde::to_vec(&at).unwrap());
        let any_day = NaiveDate::from_num_days_from_ce_opt(days % 95_000_000).unwrap_or(NaiveDate::MIN);
        for date in [at.date_naive(), any_day] {
            codec::Packer(&mut day).date(&date);
            prop_assert_eq!(&day, &rmp_serde::to_vec(&date).unwrap());
            day.clear();
        }
    }

    // Proves a sku-day packed by hand is the bytes serde writes for it, and reads back whole.
    #[test]
    fn a_sku_day_packs_to_serdes_bytes(value in sku_day()) {
        let packed = codec::encode(&value);
        prop_assert_eq!(&packed, &rmp_serde::to_vec(&value).unwrap());
        prop_assert_eq!(codec::decode::<SkuDay>(&packed).unwrap(), value);
    }

    // Proves the same of a store-day.
    #[test]
    fn a_store_day_packs_to_serdes_bytes(value in store_day()) {
        let packed = codec::encode(&value);
        prop_assert_eq!(&packed, &rmp_serde::to_vec(&value).unwrap());
        prop_assert_eq!(codec::decode::<StoreDay>(&packed).unwrap(), value);
    }
}

// Proves the integer and length bounds, where one encoding gives way to the next, pack as
// `rmp` writes them: the generated values above may miss an exact bound.
#[test]
fn every_encoding_bound_packs_as_rmp_writes_it() {
    let mut ints = vec![i64::MIN, i64::MAX];
    for bound in [32i64, 128, 256, 32_768, 65_536, 2_147_483_648, 4_294_967_296] {
        ints.extend([bound - 1, bound, bound + 1, -bound - 1, -bound, -bound + 1]);
    }
    for value in ints {
        let mut packed = Vec::new();
        codec::Packer(&mut packed).int(value);
        assert_eq!(packed, rmp_serde::to_vec(&value).unwrap(), "{value}");
    }
    for len in [0usize, 15, 16, 31, 32, 255, 256, 65_535, 65_536] {
        let text = "x".repeat(len);
        let items = vec![0u8; len];
        let (mut str_packed, mut array_packed) = (Vec::new(), Vec::new());
        codec::Packer(&mut str_packed).str(&text);
        codec::Packer(&mut array_packed).array(len);
        array_packed.extend(std::iter::repeat_n(0u8, len));
        assert_eq!(str_packed, rmp_serde::to_vec(&text).unwrap(), "str of {len}");
        assert_eq!(array_packed, rmp_serde::to_vec(&items).unwrap(), "array of {len}");
    }
}
