//! The window library's end-to-end test operator (tests/windows.rs): one
//! kind of window and one aggregate over the `v` field of JSON records,
//! chosen by `config`:
//!
//! - `assigner` = `tumbling:SIZE` | `sliding:SIZE:SLIDE` | `session:GAP` (ms);
//! - `aggregate` = `count` | `sum` | `min` | `max` | `avg` | `range` (a user
//!   aggregate: `[min, max]`);
//! - `lateness` = allowed lateness in ms (default 0).
//!
//! Window results are emitted with `WindowResult::emit`
//! (`{"key","window_start","window_end","value"}` at `end - 1`); a record
//! too late for all its windows becomes `{"late":TS,"key":..,"v":..}`.

use serde::{Deserialize, Serialize};
use weir_guest::window::{
    AggregateFunction, Average, Count, Max, Min, Sum, WindowAssigner, WindowOutput, Windows,
};
use weir_guest::{Context, Error, Json, OpenContext, Operator, Record, Result, Timer};

#[derive(Deserialize)]
pub struct Event {
    pub v: i64,
}

/// A user aggregate: the smallest and largest value seen.
#[derive(Default)]
pub struct Range;

impl AggregateFunction for Range {
    type In = i64;
    type Acc = Option<(i64, i64)>;
    type Out = (i64, i64);
    fn create(&self) -> Self::Acc {
        None
    }
    fn add(&self, acc: &mut Self::Acc, v: &i64) {
        *acc = Some(match *acc {
            None => (*v, *v),
            Some((lo, hi)) => (lo.min(*v), hi.max(*v)),
        });
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if let Some((lo, hi)) = other {
            self.add(acc, &lo);
            self.add(acc, &hi);
        }
    }
    fn result(&self, acc: &Self::Acc) -> (i64, i64) {
        acc.unwrap_or((0, 0))
    }
}

pub enum Agg {
    Count(Windows<Count<i64>>),
    Sum(Windows<Sum<i64>>),
    Min(Windows<Min<i64>>),
    Max(Windows<Max<i64>>),
    Avg(Windows<Average<i64>>),
    Range(Windows<Range>),
}

/// Calls `$body` with `$w` bound to whichever `Windows` the operator has.
macro_rules! with_windows {
    ($agg:expr, $w:ident => $body:expr) => {
        match $agg {
            Agg::Count($w) => $body,
            Agg::Sum($w) => $body,
            Agg::Min($w) => $body,
            Agg::Max($w) => $body,
            Agg::Avg($w) => $body,
            Agg::Range($w) => $body,
        }
    };
}

pub struct WindowAgg {
    agg: Agg,
}

fn assigner(spec: &str) -> Result<WindowAssigner> {
    let mut parts = spec.split(':');
    let kind = parts.next().unwrap_or("");
    let numbers: Vec<i64> = parts
        .map(|p| {
            p.parse()
                .map_err(|e| Error::msg(format!("assigner {spec:?}: {e}")))
        })
        .collect::<Result<_>>()?;
    match (kind, numbers.as_slice()) {
        ("tumbling", [size]) => WindowAssigner::tumbling(*size),
        ("sliding", [size, slide]) => WindowAssigner::sliding(*size, *slide),
        ("session", [gap]) => WindowAssigner::session(*gap),
        _ => Err(Error::msg(format!("unknown assigner {spec:?}"))),
    }
}

fn add<A>(w: &Windows<A>, ctx: &mut Context, key: &str, ts: i64, v: i64) -> Result<()>
where
    A: AggregateFunction<In = i64>,
    A::Out: Serialize,
{
    for output in w.add(ctx, ts, &v)? {
        match output {
            WindowOutput::Fired(result) => result.emit(ctx, key)?,
            WindowOutput::Late { timestamp } => {
                #[derive(Serialize)]
                struct Late<'a> {
                    late: i64,
                    key: &'a str,
                    v: i64,
                }
                let late = Late {
                    late: timestamp,
                    key,
                    v,
                };
                ctx.emit_at(key, &Json(late), Some(timestamp))?
            }
        }
    }
    Ok(())
}

fn fire<A>(w: &Windows<A>, ctx: &mut Context, timer: &Timer<String>) -> Result<()>
where
    A: AggregateFunction,
    A::Out: Serialize,
{
    for result in w.on_timer(ctx, timer)? {
        result.emit(ctx, timer.key.as_str())?;
    }
    Ok(())
}

impl Operator for WindowAgg {
    type Key = String;
    type Value = Json<Event>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        let assigner = assigner(ctx.config("assigner").unwrap_or("tumbling:1000"))?;
        let lateness = ctx.config_or("lateness", 0i64)?;
        let aggregate = ctx.config("aggregate").unwrap_or("count").to_string();
        macro_rules! windows {
            ($a:expr) => {
                Windows::new(ctx, "windows", assigner, $a)?.allowed_lateness(lateness)?
            };
        }
        let agg = match aggregate.as_str() {
            "count" => Agg::Count(windows!(Count::new())),
            "sum" => Agg::Sum(windows!(Sum::new())),
            "min" => Agg::Min(windows!(Min::new())),
            "max" => Agg::Max(windows!(Max::new())),
            "avg" => Agg::Avg(windows!(Average::new())),
            "range" => Agg::Range(windows!(Range)),
            other => return Err(Error::msg(format!("unknown aggregate {other:?}"))),
        };
        Ok(WindowAgg { agg })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<String, Json<Event>>) -> Result<()> {
        let ts = record
            .timestamp
            .ok_or_else(|| Error::msg(format!("record of {:?} has no event time", record.key)))?;
        let v = record.value.0.v;
        with_windows!(&self.agg, w => add(w, ctx, &record.key, ts, v))
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<String>) -> Result<()> {
        with_windows!(&self.agg, w => fire(w, ctx, &timer))
    }
}

weir_guest::export_operator!(WindowAgg);
