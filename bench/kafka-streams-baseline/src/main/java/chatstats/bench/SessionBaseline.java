// The Kafka Streams baseline of the benchmarks: the tracker's job in Kafka Streams' DSL.
//
// Reads the input topic (key chat_id, value a ChatMessage as JSON with sent_at in epoch
// milliseconds or ISO-8601), groups by chat, session windows with the same gap and no grace,
// emits each session once when its window closes (suppress untilWindowCloses), RocksDB session
// store with its changelog, processing.guarantee=exactly_once_v2, and writes every closed session
// to the output topic as JSON: {chat_id, start, end, count, message_ids}.
//
// Event time is sent_at (a TimestampExtractor), like the tracker. What Kafka Streams cannot do
// the same way, and so does not (see BENCHMARKS.md): no duplicate detection (a duplicate delivery
// is counted twice), no per-chat clock (a window closes when the partition's stream time, the
// largest timestamp of any chat in the partition, passes end + gap), no wall-clock seal, no late
// topic (a record behind the close time is dropped and only counted in a metric).
//
// Configuration from the environment: BOOTSTRAP (127.0.0.1:9092), APPLICATION_ID, INPUT, OUTPUT,
// STATE_DIR, GAP_MS (5400000), GRACE_MS (0), THREADS (1), EMIT (suppress | close), AGG (ids |
// count), RETENTION_MS (172800000). Runs until SIGTERM; prints one JSON line
// on stdout when RUNNING and one with its counters when closed.
package chatstats.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.time.Instant;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindowedKStream;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.processor.TimestampExtractor;

public final class SessionBaseline {
  private static final ObjectMapper JSON = new ObjectMapper();
  static final AtomicLong invalid = new AtomicLong();

  /** The event time of a record: the sent_at of its ChatMessage value. */
  public static final class SentAtExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      Object v = record.value();
      if (v instanceof String s) {
        try {
          JsonNode sent = JSON.readTree(s).get("sent_at");
          if (sent != null && sent.isNumber()) return sent.asLong();
          if (sent != null && sent.isTextual()) return Instant.parse(sent.asText()).toEpochMilli();
        } catch (Exception e) {
          // fall through: a record without a usable time is skipped (negative timestamp)
        }
      }
      invalid.incrementAndGet();
      return -1;
    }
  }

  private static String env(String name, String def) {
    String v = System.getenv(name);
    return v == null || v.isBlank() ? def : v;
  }

  /** The aggregate of a session: its message ids, newline-separated, in arrival order. */
  static String addId(String agg, String id) {
    return agg.isEmpty() ? id : agg + "\n" + id;
  }

  static String messageId(String value) {
    try {
      JsonNode id = JSON.readTree(value).get("message_id");
      return id == null ? "" : id.asText();
    } catch (Exception e) {
      return "";
    }
  }

  static String sessionJson(String chat, long start, long end, String agg) {
    ObjectNode o = JSON.createObjectNode();
    o.put("chat_id", chat);
    o.put("start", start);
    o.put("end", end);
    String[] ids = agg.isEmpty() ? new String[0] : agg.split("\n", -1);
    o.put("count", ids.length);
    ArrayNode arr = o.putArray("message_ids");
    for (String id : ids) arr.add(id);
    return o.toString();
  }

  public static void main(String[] args) throws Exception {
    String input = env("INPUT", "chat.messages");
    String output = env("OUTPUT", "ks.sessions");
    long gapMs = Long.parseLong(env("GAP_MS", "5400000"));
    long graceMs = Long.parseLong(env("GRACE_MS", "0"));

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, env("APPLICATION_ID", "chatstats-ks-baseline"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("BOOTSTRAP", "127.0.0.1:9092"));
    p.put(StreamsConfig.STATE_DIR_CONFIG, env("STATE_DIR", "/tmp/kafka-streams-baseline"));
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(env("THREADS", "1")));
    p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    // Output and changelog records carry old event times (a backlog): do not let the broker's
    // time-based retention of the internal changelog race the benchmark.
    p.put(StreamsConfig.topicPrefix("retention.ms"), "-1");
    // The tracker's transactions may last 60 s; Kafka Streams' default under EOS is 10 s, which
    // the loaded benchmark machine exceeds (the broker then fences the producer).
    p.put(StreamsConfig.producerPrefix("transaction.timeout.ms"), "60000");

    // AGG=ids (default): the sessions' message ids, as the comparison needs. AGG=count: one
    // character per message instead (a profile of the aggregate's cost; output ids are empty).
    boolean idsOnly = env("AGG", "ids").equals("count");
    // The session store keeps sessions for its retention (at least gap + grace) in segments of
    // half the retention, each segment its own RocksDB. With the default (gap + grace = 90 min), a
    // backlog spanning 30 days of event time opens and drops a RocksDB every 45 min of event time
    // per partition. RETENTION_MS (default: 2 days) makes them few.
    long retentionMs = Math.max(gapMs + graceMs, Long.parseLong(env("RETENTION_MS", String.valueOf(2 * 86_400_000L))));
    StreamsBuilder b = new StreamsBuilder();
    SessionWindowedKStream<String, String> windowed = b
        .stream(input, Consumed.with(Serdes.String(), Serdes.String()).withTimestampExtractor(new SentAtExtractor()))
        .mapValues(idsOnly ? (v -> "") : SessionBaseline::messageId)
        .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
        .windowedBy(SessionWindows.ofInactivityGapAndGrace(Duration.ofMillis(gapMs), Duration.ofMillis(graceMs)));
    // EMIT=suppress (default): RocksDB session store with the record cache, then
    // suppress(untilWindowCloses): each session once, when the partition's stream time passes its
    // end + gap + grace. EMIT=close: EmitStrategy.onWindowClose (time-ordered RocksDB session
    // store); in 4.1.1 it emitted only a fraction of the closed sessions here (BENCHMARKS.md).
    boolean suppress = !env("EMIT", "suppress").equals("close");
    if (!suppress) windowed = windowed.emitStrategy(EmitStrategy.onWindowClose());
    KTable<Windowed<String>, String> sessions = windowed.aggregate(
        () -> "",
        (chat, id, agg) -> addId(agg, id),
        (chat, a, c) -> a.isEmpty() ? c : c.isEmpty() ? a : a + "\n" + c,
        Materialized.<String, String, SessionStore<Bytes, byte[]>>as("sessions")
            .withKeySerde(Serdes.String()).withValueSerde(Serdes.String())
            .withRetention(Duration.ofMillis(retentionMs)));
    if (suppress) sessions = sessions.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()));
    sessions.toStream()
        .filter((wk, agg) -> agg != null)
        .map((wk, agg) -> KeyValue.pair(wk.key(), sessionJson(wk.key(), wk.window().start(), wk.window().end(), agg)))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));

    KafkaStreams streams = new KafkaStreams(b.build(), p);
    CountDownLatch done = new CountDownLatch(1);
    long started = System.currentTimeMillis();
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) {
        System.out.println("{\"event\":\"running\",\"ms\":" + (System.currentTimeMillis() - started) + "}");
      }
      if (now == KafkaStreams.State.ERROR) done.countDown();
    });
    streams.setUncaughtExceptionHandler(e -> {
      System.err.println("stream thread failed: " + e);
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      double dropped = streams.metrics().values().stream()
          .filter(m -> m.metricName().name().equals("dropped-records-total"))
          .mapToDouble(m -> ((Number) m.metricValue()).doubleValue()).sum();
      streams.close(Duration.ofSeconds(60));
      System.out.println("{\"event\":\"closed\",\"invalid\":" + invalid.get() + ",\"dropped\":" + (long) dropped + "}");
      System.out.flush();
      done.countDown();
    }));
    streams.start();
    done.await();
  }
}
