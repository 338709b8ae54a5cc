//! Flags an account whose small transaction (under 1.00) is followed by a
//! large one (over 500.00) within a minute of event time — the operator of
//! Flink's fraud-detection tutorial, on host-managed keyed state and an
//! event-time timer that clears the flag when the minute is up.

use serde::{Deserialize, Serialize};
use weir_guest::{Context, Json, OpenContext, Operator, Record, Result, Timer, ValueState};

pub const SMALL_AMOUNT: f64 = 1.00;
pub const LARGE_AMOUNT: f64 = 500.00;
pub const ONE_MINUTE_MS: i64 = 60 * 1000;

#[derive(Deserialize)]
pub struct Transaction {
    pub account_id: String,
    pub amount: f64,
}

#[derive(Serialize)]
pub struct Alert {
    pub account_id: String,
    pub small_at: i64,
    pub large_at: i64,
    pub amount: f64,
}

pub struct FraudDetector {
    /// When this account's last small transaction happened, while it counts.
    small_at: ValueState<i64>,
}

impl Operator for FraudDetector {
    type Key = String;
    type Value = Json<Transaction>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        Ok(FraudDetector {
            small_at: ctx.value_state("small-transaction-at")?,
        })
    }

    fn process(
        &mut self,
        ctx: &mut Context,
        record: Record<String, Json<Transaction>>,
    ) -> Result<()> {
        let tx = &record.value;
        let Some(now) = record.timestamp else {
            return Err(weir_guest::Error::msg(format!(
                "transaction of {} has no event time",
                tx.account_id
            )));
        };
        if let Some(small_at) = self.small_at.get(ctx)? {
            // Checked here too, not only by the timer: the timer fires on the
            // watermark, which may trail this record.
            if tx.amount > LARGE_AMOUNT && now - small_at <= ONE_MINUTE_MS && now >= small_at {
                let alert = Alert {
                    account_id: tx.account_id.clone(),
                    small_at,
                    large_at: now,
                    amount: tx.amount,
                };
                ctx.emit(&record.key, &Json(alert))?;
                self.clear(ctx, small_at);
            }
        }
        if tx.amount < SMALL_AMOUNT {
            if let Some(previous) = self.small_at.get(ctx)? {
                ctx.delete_event_timer(previous + ONE_MINUTE_MS);
            }
            self.small_at.set(ctx, &now)?;
            ctx.register_event_timer(now + ONE_MINUTE_MS);
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<String>) -> Result<()> {
        if self.small_at.get(ctx)? == Some(timer.timestamp - ONE_MINUTE_MS) {
            self.small_at.clear(ctx);
        }
        Ok(())
    }
}

impl FraudDetector {
    fn clear(&self, ctx: &mut Context, small_at: i64) {
        ctx.delete_event_timer(small_at + ONE_MINUTE_MS);
        self.small_at.clear(ctx);
    }
}

weir_guest::export_operator!(FraudDetector);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    fn tx(h: &mut Harness<FraudDetector>, account: &str, amount: f64, ts: i64) -> Vec<String> {
        let value = format!("{{\"account_id\":\"{account}\",\"amount\":{amount}}}");
        h.process(&account.to_string(), &value, Some(ts))
            .unwrap()
            .iter()
            .map(|e| e.text().1)
            .collect()
    }

    #[test]
    fn small_then_large_within_a_minute_is_flagged() {
        let mut h = Harness::<FraudDetector>::new().unwrap();
        assert!(tx(&mut h, "a", 0.5, 1000).is_empty());
        let alerts = tx(&mut h, "a", 900.0, 30_000);
        assert_eq!(
            alerts,
            [r#"{"account_id":"a","small_at":1000,"large_at":30000,"amount":900.0}"#]
        );
        assert!(
            tx(&mut h, "a", 900.0, 31_000).is_empty(),
            "one alert per small transaction"
        );
        assert!(h.pending_timers().is_empty());
    }

    #[test]
    fn the_flag_expires_after_a_minute() {
        let mut h = Harness::<FraudDetector>::new().unwrap();
        tx(&mut h, "a", 0.5, 1000);
        h.advance_watermark(61_000).unwrap();
        assert!(tx(&mut h, "a", 900.0, 61_500).is_empty());
    }

    #[test]
    fn late_large_transaction_is_not_flagged_even_before_the_timer_fires() {
        let mut h = Harness::<FraudDetector>::new().unwrap();
        tx(&mut h, "a", 0.5, 1000);
        assert!(tx(&mut h, "a", 900.0, 62_000).is_empty());
    }

    #[test]
    fn accounts_are_independent() {
        let mut h = Harness::<FraudDetector>::new().unwrap();
        tx(&mut h, "a", 0.5, 1000);
        assert!(tx(&mut h, "b", 900.0, 2000).is_empty());
    }
}
