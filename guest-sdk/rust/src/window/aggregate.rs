//! Incremental aggregation: a window keeps one accumulator, not its
//! records.
//!
//! Accumulators live in keyed state (binary, with serde), so they must be
//! cloneable serde types; built-in aggregates cover count, sum, min, max
//! and average, and any other is an [`AggregateFunction`] of your own.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An aggregation over the records of a window, like Flink's
/// `AggregateFunction`: `create` an empty accumulator, `add` records to
/// it, `merge` two (session windows merge), and read the `result`.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_guest::window::AggregateFunction;
///
/// /// The highest bid of a window, with its bidder.
/// struct HighestBid;
///
/// #[derive(Serialize, Deserialize, Clone, Default)]
/// struct Bid { bidder: String, price: u64 }
///
/// impl AggregateFunction for HighestBid {
///     type In = Bid;
///     type Acc = Option<Bid>;
///     type Out = Bid;
///     fn create(&self) -> Option<Bid> { None }
///     fn add(&self, acc: &mut Option<Bid>, bid: &Bid) {
///         if acc.as_ref().is_none_or(|best| bid.price > best.price) {
///             *acc = Some(bid.clone());
///         }
///     }
///     fn merge(&self, acc: &mut Option<Bid>, other: Option<Bid>) {
///         if let Some(bid) = other { self.add(acc, &bid) }
///     }
///     fn result(&self, acc: &Option<Bid>) -> Bid { acc.clone().unwrap_or_default() }
/// }
/// ```
pub trait AggregateFunction {
    /// What each record contributes.
    type In: ?Sized;
    /// The running state of one window (of one pane, for sliding windows:
    /// a window's result merges clones of its panes' accumulators), stored
    /// in keyed state.
    type Acc: Clone + Serialize + DeserializeOwned;
    /// What a window emits.
    type Out;

    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: &Self::In);
    /// Adds `value` and says whether `acc` changed. The default adds and
    /// says yes; override it where most records leave the accumulator as
    /// it was (a maximum, a top-n): the window library then skips the
    /// state write.
    fn add_changed(&self, acc: &mut Self::Acc, value: &Self::In) -> bool {
        self.add(acc, value);
        true
    }
    /// Folds `other` into `acc` (when session windows merge).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Numbers the built-in aggregates work on. Integer sums saturate instead
/// of wrapping or panicking.
pub trait Number: Copy + PartialOrd + Serialize + DeserializeOwned {
    const ZERO: Self;
    fn plus(self, other: Self) -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! integer_number {
    ($($t:ty),*) => {$(
        impl Number for $t {
            const ZERO: Self = 0;
            fn plus(self, other: Self) -> Self {
                self.saturating_add(other)
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
integer_number!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

macro_rules! float_number {
    ($($t:ty),*) => {$(
        impl Number for $t {
            const ZERO: Self = 0.0;
            fn plus(self, other: Self) -> Self {
                self + other
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
float_number!(f32, f64);

/// Counts records (of any type `T`; `()` by default).
pub struct Count<T: ?Sized = ()>(PhantomData<fn(&T)>);

impl<T: ?Sized> Count<T> {
    pub fn new() -> Self {
        Count(PhantomData)
    }
}

impl<T: ?Sized> Default for Count<T> {
    fn default() -> Self {
        Count::new()
    }
}

impl<T: ?Sized> AggregateFunction for Count<T> {
    type In = T;
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _value: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

macro_rules! numeric_aggregate {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<T>(PhantomData<fn(&T)>);

        impl<T> $name<T> {
            pub fn new() -> Self {
                $name(PhantomData)
            }
        }

        impl<T> Default for $name<T> {
            fn default() -> Self {
                $name::new()
            }
        }
    };
}

numeric_aggregate!(
    /// Sums numbers.
    Sum
);
numeric_aggregate!(
    /// The smallest number.
    Min
);
numeric_aggregate!(
    /// The largest number.
    Max
);
numeric_aggregate!(
    /// The arithmetic mean, as `f64`.
    Average
);

impl<T: Number> AggregateFunction for Sum<T> {
    type In = T;
    type Acc = T;
    type Out = T;
    fn create(&self) -> T {
        T::ZERO
    }
    fn add(&self, acc: &mut T, value: &T) {
        *acc = acc.plus(*value);
    }
    fn merge(&self, acc: &mut T, other: T) {
        *acc = acc.plus(other);
    }
    fn result(&self, acc: &T) -> T {
        *acc
    }
}

/// Keeps the better of two values; `None` is an empty window. Says
/// whether `value` was kept.
fn keep<T: Number>(acc: &mut Option<T>, value: T, better: fn(&T, &T) -> bool) -> bool {
    let kept = acc.as_ref().is_none_or(|best| better(&value, best));
    if kept {
        *acc = Some(value);
    }
    kept
}

impl<T: Number> AggregateFunction for Min<T> {
    type In = T;
    type Acc = Option<T>;
    /// A window holds at least one record, so this is its minimum (an
    /// accumulator that never saw a record would read as zero).
    type Out = T;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        keep(acc, *value, |a, b| a < b);
    }
    fn add_changed(&self, acc: &mut Option<T>, value: &T) -> bool {
        keep(acc, *value, |a, b| a < b)
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(v) = other {
            keep(acc, v, |a, b| a < b);
        }
    }
    fn result(&self, acc: &Option<T>) -> T {
        acc.unwrap_or(T::ZERO)
    }
}

impl<T: Number> AggregateFunction for Max<T> {
    type In = T;
    type Acc = Option<T>;
    /// As [`Min`]'s: a window's maximum.
    type Out = T;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        keep(acc, *value, |a, b| a > b);
    }
    fn add_changed(&self, acc: &mut Option<T>, value: &T) -> bool {
        keep(acc, *value, |a, b| a > b)
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(v) = other {
            keep(acc, v, |a, b| a > b);
        }
    }
    fn result(&self, acc: &Option<T>) -> T {
        acc.unwrap_or(T::ZERO)
    }
}

impl<T: Number> AggregateFunction for Average<T> {
    type In = T;
    /// (sum, count).
    type Acc = (f64, u64);
    type Out = f64;
    fn create(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn add(&self, acc: &mut (f64, u64), value: &T) {
        acc.0 += value.to_f64();
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn result(&self, acc: &(f64, u64)) -> f64 {
        if acc.1 == 0 {
            0.0
        } else {
            acc.0 / acc.1 as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<A: AggregateFunction>(a: &A, values: &[&A::In]) -> A::Acc {
        let mut acc = a.create();
        for v in values {
            a.add(&mut acc, v);
        }
        acc
    }

    #[test]
    fn built_ins_add_and_merge() {
        let sum = Sum::<i64>::new();
        let mut acc = fold(&sum, &[&3, &-1]);
        sum.merge(&mut acc, fold(&sum, &[&10]));
        assert_eq!(sum.result(&acc), 12);
        assert_eq!(
            Sum::<u8>::new().result(&fold(&Sum::new(), &[&200u8, &100])),
            255
        );

        let min = Min::<f64>::new();
        let mut acc = fold(&min, &[&2.5, &-0.5]);
        min.merge(&mut acc, fold(&min, &[&-3.0]));
        min.merge(&mut acc, None);
        assert_eq!(min.result(&acc), -3.0);

        let max = Max::<u64>::new();
        let mut acc = fold(&max, &[&7, &9, &1]);
        max.merge(&mut acc, fold(&max, &[&8]));
        assert_eq!(max.result(&acc), 9);

        let avg = Average::<u32>::new();
        let mut acc = fold(&avg, &[&1, &2]);
        avg.merge(&mut acc, fold(&avg, &[&6]));
        assert_eq!(avg.result(&acc), 3.0);

        let count = Count::<str>::new();
        let mut acc = fold(&count, &["a", "b"]);
        count.merge(&mut acc, 5);
        assert_eq!(count.result(&acc), 7);
    }
}
