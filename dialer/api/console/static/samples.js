// Samples of each batch's counters, taken by the console's polls (the batches list and a batch's page),
// for calls per minute and the chart of calls over time. They cost the server nothing extra: each is
// a counter read the page makes anyway (O(1) per batch). They cover the time this tab has had the
// console open (kept in session storage across reloads); older samples are thinned, never the newest.

const MAX_SAMPLES = 600;
const MAX_BATCHES = 50;
const STORAGE_KEY = "dialer.samples";
const SAME_SAMPLE_MS = 500;  // two polls this close (list and batch page) make one sample

export class Samples {
  constructor(storage = window.sessionStorage) {
    this.storage = storage;
    this.byBatch = new Map();
    try {
      for (const [id, list] of JSON.parse(storage.getItem(STORAGE_KEY) || "[]")) this.byBatch.set(id, list);
    } catch {
      this.byBatch.clear();
    }
  }

  add(batchId, counters, t = Date.now()) {
    if (!counters) return;
    let list = this.byBatch.get(batchId);
    if (!list) {
      list = [];
      this.byBatch.set(batchId, list);
    }
    const sample = {
      t,
      attempts: counters.attempts,
      finished: counters.finished,
      waiting: counters.waiting,
      inFlight: counters.inFlight,
      scheduled: counters.scheduled,
    };
    const last = list[list.length - 1];
    if (last && t - last.t < SAME_SAMPLE_MS) list[list.length - 1] = sample;
    else list.push(sample);
    if (list.length > MAX_SAMPLES) thin(list);
  }

  series(batchId) {
    return this.byBatch.get(batchId) || [];
  }

  // Calls placed per minute over the last minute of samples (or what there is, from 5 s on); null before.
  perMinute(batchId, windowMs = 60000) {
    const list = this.series(batchId);
    if (list.length < 2) return null;
    const last = list[list.length - 1];
    let first = list[0];
    for (let i = list.length - 2; i >= 0; i -= 1) {
      first = list[i];
      if (last.t - first.t >= windowMs) break;
    }
    const span = last.t - first.t;
    if (span < 5000) return null;
    return Math.max(0, last.attempts - first.attempts) * 60000 / span;
  }

  save() {
    const recent = [...this.byBatch.entries()]
      .sort((a, b) => b[1][b[1].length - 1].t - a[1][a[1].length - 1].t)
      .slice(0, MAX_BATCHES);
    try {
      this.storage.setItem(STORAGE_KEY, JSON.stringify(recent));
    } catch {
      // storage full or disabled: the samples live as long as the page
    }
  }

  clear() {
    this.byBatch.clear();
    this.storage.removeItem(STORAGE_KEY);
  }
}

// Every other sample of the older half goes: the chart keeps its whole span at a coarser step.
function thin(list) {
  const half = Math.floor(list.length / 2);
  const kept = list.slice(0, half).filter((_, i) => i % 2 === 0);
  list.splice(0, half, ...kept);
}
