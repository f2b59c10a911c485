// The part of @nxtedition/rocksdb (abstract-level API) this project uses.
declare module '@nxtedition/rocksdb' {
  export interface RocksIterator<K, V> {
    nextv(size: number): Promise<[K, V][]>;
    close(): Promise<void>;
  }
  export class RocksLevel<K = string, V = Buffer> {
    constructor(location: string, options?: { keyEncoding?: string; valueEncoding?: string });
    open(): Promise<void>;
    close(): Promise<void>;
    getMany(keys: K[]): Promise<(V | undefined)[]>;
    batch(ops: ({ type: 'put'; key: K; value: V } | { type: 'del'; key: K })[]): Promise<void>;
    iterator(options: { gte?: K; lt?: K; limit?: number }): RocksIterator<K, V>;
    getProperty(name: string): string;
  }
}
