"""Flags an account whose small transaction (under 1.00) is followed by a
large one (over 500.00) within a minute of event time: the Rust
fraud-detector, line for line, in Python. Its output must be identical."""

import weir

SMALL_AMOUNT = 1.00
LARGE_AMOUNT = 500.00
ONE_MINUTE_MS = 60 * 1000


class FraudDetector(weir.Operator):
    key = str
    value = weir.Json  # {"account_id": str, "amount": number, ...}

    def open(self, ctx):
        # When this account's last small transaction happened, while it counts.
        self.small_at = ctx.value_state("small-transaction-at", int)

    def process(self, ctx, record):
        tx = record.value
        account_id, amount = str(tx["account_id"]), float(tx["amount"])
        now = record.timestamp
        if now is None:
            raise ValueError(f"transaction of {account_id} has no event time")
        small_at = self.small_at.get(ctx)
        if small_at is not None:
            # Checked here too, not only by the timer: the timer fires on the
            # watermark, which may trail this record.
            if amount > LARGE_AMOUNT and now - small_at <= ONE_MINUTE_MS and now >= small_at:
                alert = {"account_id": account_id, "small_at": small_at,
                         "large_at": now, "amount": amount}
                ctx.emit(record.key, alert)
                ctx.delete_event_timer(small_at + ONE_MINUTE_MS)
                self.small_at.clear(ctx)
        if amount < SMALL_AMOUNT:
            previous = self.small_at.get(ctx)
            if previous is not None:
                ctx.delete_event_timer(previous + ONE_MINUTE_MS)
            self.small_at.set(ctx, now)
            ctx.register_event_timer(now + ONE_MINUTE_MS)

    def on_timer(self, ctx, timer):
        if self.small_at.get(ctx) == timer.timestamp - ONE_MINUTE_MS:
            self.small_at.clear(ctx)


Hooks = weir.export(FraudDetector)
