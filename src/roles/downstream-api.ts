// The shape of the downstream processors' entry points, as the app starts them.
import type { Config } from '../config';

export interface StoppableRole { stop(): Promise<void> }
export declare function startEtl(cfg: Config, opts: Record<string, unknown>): Promise<StoppableRole>;
export declare function startAnalysis(cfg: Config, opts: Record<string, unknown>): Promise<StoppableRole>;
