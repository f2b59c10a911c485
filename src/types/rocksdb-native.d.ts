// The part of rocksdb-native (Holepunch's librocksdb binding) that src/runtime/state-store.ts uses.
declare module 'rocksdb-native' {
  interface RocksDBOptions {
    maxBackgroundJobs?: number;
    writeBufferSize?: number;
    maxWriteBufferNumber?: number;
    blockCache?: boolean;
    tableCacheIndexAndFilterBlocks?: boolean;
    [option: string]: unknown;
  }
  interface ReadBatch {
    get(key: string | Buffer): Promise<Buffer | null>;
    tryFlush(): void;
    flush(): Promise<void>;
    destroy(): void;
  }
  interface WriteBatch {
    tryPut(key: string | Buffer, value: Buffer): void;
    tryDelete(key: string | Buffer): void;
    tryDeleteRange(start: string | Buffer, end: string | Buffer): void;
    flush(): Promise<void>;
    destroy(): void;
  }
  /** A streamx Readable of entries. */
  interface Iterator extends AsyncIterable<{ key: Buffer; value: Buffer }> {
    read(): { key: Buffer; value: Buffer } | null;
    readonly destroying: boolean;
    readonly _readableState: { readonly ended: boolean } | null;
    on(event: 'readable' | 'end' | 'close', listener: () => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    off(event: string, listener: (...args: any[]) => void): this;
    destroy(err?: Error): void;
  }
  class RocksDB {
    constructor(path: string, options?: RocksDBOptions);
    ready(): Promise<void>;
    close(): Promise<void>;
    read(options?: { capacity?: number }): ReadBatch;
    write(options?: { capacity?: number }): WriteBatch;
    iterator(range: { gt?: string | Buffer; gte?: string | Buffer; lt?: string | Buffer; lte?: string | Buffer; limit?: number; reverse?: boolean },
      options?: { capacity?: number }): Iterator;
    getProperty(name: string): Promise<string | undefined>;
  }
  export = RocksDB;
}
