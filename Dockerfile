# syntax=docker/dockerfile:1
# chatstats-stream: one image for every role (tracker, etl, analysis) and the CLI.
#   docker build -t chatstats-stream .
#   docker run --rm chatstats-stream --help
# Debian-based on purpose: the RocksDB binding ships a linux-x64 glibc prebuild (no alpine/musl).

# --- build: all dependencies, compile TypeScript, then drop the dev dependencies ---------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts are skipped: `prepare` compiles sources that are not copied yet, and the native
# dependency (rocksdb-native) loads the prebuild inside its npm package at run time; that
# prebuild links libatomic.
RUN apt-get update && apt-get install -y --no-install-recommends libatomic1 && rm -rf /var/lib/apt/lists/*
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund --ignore-scripts \
 && node -e "require('rocksdb-native')"

# --- runtime: node, production dependencies, the compiled code and the files it reads ----------
FROM node:20-bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends libatomic1 && rm -rf /var/lib/apt/lists/*
# MALLOC_ARENA_MAX: glibc's malloc otherwise keeps an arena per thread (RocksDB's and libuv's),
# which holds freed native memory: the soak's RSS is lower and flatter with two (BENCHMARKS.md).
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    LOG_FORMAT=json \
    STATE_DIR=/var/lib/chatstats/state \
    METRICS_PORT=9464
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY bin ./bin
COPY schemas ./schemas
COPY migrations ./migrations
COPY config ./config
COPY data ./data
# The tracker's RocksDB stores live under STATE_DIR: mount a volume there (owned by `node`).
# `chatstats demo` writes its HTML report to reports/ (mount a host directory there to keep it).
RUN mkdir -p /var/lib/chatstats/state /app/reports && chown -R node:node /var/lib/chatstats /app/reports
USER node
VOLUME ["/var/lib/chatstats/state"]
EXPOSE 9464
# Healthy = alive (/healthz) and ready (/readyz: connected, every partition restored).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "const u=(s)=>fetch('http://127.0.0.1:'+(process.env.METRICS_PORT||9464)+s,{signal:AbortSignal.timeout(4000)});u('/healthz').then((a)=>a.ok?u('/readyz'):a).then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "bin/chatstats.js"]
CMD ["run", "all"]
