// Plain tests of the dashboard's logic (no DOM): `node app.test.js`.
// Run by ui.rs's unit tests when node is installed; not served.
'use strict';
const assert = require('node:assert/strict');
const ui = require('./app.js');

function metrics(unix_ms, nodes) {
  return {
    job: 'j', unix_ms,
    nodes: nodes.map(([name, kind, subtasks]) => ({ name, kind, subtasks: subtasks.map((s, i) => Object.assign({
      subtask: i, records_in: 0, records_out: 0, busy_ms: 0, idle_ms: 0, backpressured_ms: 0, watermark: null,
    }, s)) })),
  };
}

// Rates come from two samples, summed over subtasks: sources count what
// they emit, the rest what they receive.
{
  const job = { name: 'j' };
  ui.sample(job, metrics(10000, [['src', 'source', [{ records_out: 100 }]], ['op', 'operator', [{ records_in: 50, busy_ms: 0 }, { records_in: 50 }]]]));
  assert.deepEqual(ui.S.rates, {}, 'one sample gives no rate');
  ui.sample(job, metrics(12000, [
    ['src', 'source', [{ records_out: 2100 }]],
    ['op', 'operator', [{ records_in: 1050, busy_ms: 1000, backpressured_ms: 500, watermark: 11000 }, { records_in: 1050, busy_ms: 1000 }]],
  ]));
  assert.equal(ui.S.rates.src.rate, 1000);
  assert.equal(ui.S.rates.op.rate, 1000);
  assert.equal(ui.S.rates.op.busy, 0.5, 'busy 2000 ms over 2 subtasks × 2000 ms');
  assert.equal(ui.S.rates.op.bp, 0.125);
  assert.equal(ui.S.rates.op.lag, null, 'a subtask without a watermark: the node has none');
  assert.equal(ui.S.rates.op.subs[0].busy, 0.5);
  assert.equal(ui.S.history.length, 1);
  // The same sample again keeps the rates; a restart (counters back to 0) gives 0, not a negative rate.
  ui.sample(job, metrics(12000, [['src', 'source', [{ records_out: 2100 }]]]));
  assert.equal(ui.S.rates.src.rate, 1000);
  ui.sample(job, metrics(13000, [['src', 'source', [{ records_out: 10 }]], ['op', 'operator', [{ records_in: 0, watermark: 12500 }]]]));
  assert.equal(ui.S.rates.src.rate, 0);
  assert.equal(ui.S.rates.op.lag, 500);
}

// Columns by longest path from a source.
{
  const nodes = ['s', 'a', 'b', 'k'].map((name) => ({ name }));
  const edges = [{ from: 's', to: 'a' }, { from: 'a', to: 'b' }, { from: 's', to: 'b' }, { from: 'b', to: 'k' }];
  const columns = ui.layout(nodes, edges).map((c) => c.map((n) => n.name));
  assert.deepEqual(columns, [['s'], ['a'], ['b'], ['k']]);
  assert.deepEqual(ui.layout(nodes, []).map((c) => c.length), [4]);
}

assert.equal(ui.ratio(5, 0), 0);
assert.equal(ui.ratio(-5, 10), 0);
assert.equal(ui.ratio(50, 10), 1);
assert.equal(ui.num(1234.4), '1234');
assert.equal(ui.num(0), '0');
assert.equal(ui.bytes(2048), '2.0 KiB');
assert.equal(ui.duration(65000), '1m 05s');
assert.equal(ui.colour(0, 0), 'rgb(231,240,250)');
assert.equal(ui.colour(1, 1), 'rgb(240,110,100)');
console.log('app.test.js: ok');
