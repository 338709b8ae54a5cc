// The real host, through the component's WIT imports. Only imported inside
// a component (the build's entry module imports it before the operator).

import * as state from "weir:operator/keyed-state@0.1.0";
import * as timers from "weir:operator/timers@0.1.0";
import { log } from "weir:operator/log@0.1.0";
import { setHostFactory } from "./weir.js";
import { readEntries } from "./wire.js";

// componentize-js hands an s64 back as a BigInt of its unsigned bits: the
// "no watermark yet" value i64::MIN would read as +9.2e18, every window
// would look closed and every record late.
function signed(v) { return Number(BigInt.asIntN(64, BigInt(v))); }

const LEVELS = new Set(["trace", "debug", "info", "warn", "error"]);

class WitHost {
  valueGet(s, k) { return state.valueGet(s, k); }
  valueSet(s, k, v) { state.valueSet(s, k, v); }
  listAppend(s, k, v) { state.listAppend(s, k, v); }
  listGet(s, k) { return state.listGet(s, k); }
  mapGet(s, k, mk) { return state.mapGet(s, k, mk); }
  mapPut(s, k, mk, v) { state.mapPut(s, k, mk, v); }
  mapRemove(s, k, mk) { state.mapRemove(s, k, mk); }
  mapEntries(s, k) { return readEntries(state.mapEntries(s, k)); }
  clear(s, k) { state.clear(s, k); }
  valueWriteMany(s, writes) { state.valueWriteMany(s, writes); }
  registerTimer(domain, k, ts) { timers.registerTimer(domain, k, BigInt(ts)); }
  registerTimers(batch) { timers.registerTimers(batch); }
  deleteTimer(domain, k, ts) { timers.deleteTimer(domain, k, BigInt(ts)); }
  watermark() { return signed(timers.currentWatermark()); }
  processingTime() { return signed(timers.currentProcessingTime()); }
  log(level, message) { log(LEVELS.has(level) ? level : "info", message); }
}

setHostFactory(() => new WitHost());
