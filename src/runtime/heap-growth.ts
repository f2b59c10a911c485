// How far the JS heap may grow between two full garbage collections (HEAP_GROWTH_PERCENT).
//
// V8 sets the next full collection's trigger at the live heap times a factor it derives from the
// collector's and the program's speeds, up to 4x on a machine of several gigabytes. A stream
// processor promotes each batch's objects (they outlive the scavenges that run while its
// transaction is in flight), so its heap climbs from its live size to that trigger and back: with
// ~60 MB live, a sawtooth up to ~230 MB, which is most of the process's peak RSS. A fixed factor
// of (1 + percent/100) bounds that peak at the cost of more frequent (mostly concurrent) full
// collections. 0 leaves V8's own factor.
import v8 from 'node:v8';

let applied = 0;

/** Sets V8's heap growing factor to (1 + percent/100) for this process; 0: V8's own. */
export function setHeapGrowth(percent: number): void {
  if (!Number.isSafeInteger(percent) || percent < 0) throw new Error(`heap growth must be a whole number of percent >= 0, got ${percent}`);
  if (percent === applied) return;
  // V8 reads this flag each time it sets the next trigger, so setting it at run time takes effect
  // from the next full collection on.
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  applied = percent;
}
