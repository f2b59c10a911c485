// What the runtime needs to run a stateful topology: its source, its store and its processor.
import type { ProcessorFactory } from './processor';
import type { TaskSpec } from './stream-task';

export interface Topology {
  /** Names the consumer group (`<APP_ID>-<name>`) and the transactional ids. */
  name: string;
  source: string;
  store: { name: string; changelog: string };
  processor: ProcessorFactory;
  sinks: Record<string, string>;
  createPartitioner?: TaskSpec['createPartitioner'];
}
