# The broker's SASL_SSL listener (sourced by infra/up.sh, after common.sh): TLS material, the SASL
# user, and the server.properties lines. Everything is made on first start and kept in
# $KAFKA_TLS_DIR (.infra/kafka/tls by default):
#   ca.pem           a self-signed CA, PEM: what clients trust (KAFKA_SSL_CA_FILE)
#   broker.p12       the broker's key and its certificate for localhost and 127.0.0.1, signed by the
#                    CA (PKCS12, made with keytool; the CA's own key is not kept)
#   store-password   the keystore's password
#   scram-password   the password of the SASL user $KAFKA_SASL_USER ("chatstats"), the same for
#                    SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN
#   client.env       KAFKA_* variables for chatstats against the SASL_SSL listener
#                    (`set -a; . .infra/kafka/tls/client.env; set +a`)
# SCRAM credentials live in the cluster metadata: a new data dir gets them at format time
# (StorageTool --add-scram); for a data dir formatted earlier, or after the password changed,
# ensure_sasl_user sets them with the admin API (ConfigCommand). PLAIN users are listed in the
# broker's JAAS configuration. Inter-broker and controller traffic stay PLAINTEXT.

random_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

sasl_password() { cat "$KAFKA_TLS_DIR/scram-password"; }
store_password() { cat "$KAFKA_TLS_DIR/store-password"; }

# The CA, the broker keystore and the passwords, unless they exist. Made in a scratch directory
# and moved into place, so an interrupted run leaves nothing half made.
ensure_tls() {
  local dir=$KAFKA_TLS_DIR
  if [ -s "$dir/ca.pem" ] && [ -s "$dir/broker.p12" ] && [ -s "$dir/store-password" ] && [ -s "$dir/scram-password" ]; then
    write_client_env
    return
  fi
  command -v keytool >/dev/null || fail "TLS material (keytool not found; it comes with the JDK)" /dev/null
  echo "infra:up: creating a local CA and a broker certificate for 127.0.0.1/localhost in $dir"
  mkdir -p "$KAFKA_HOME/logs"
  local log="$KAFKA_HOME/logs/tls.log" tmp pass san="san=dns:localhost,ip:127.0.0.1"
  tmp=$(mktemp -d "$KAFKA_HOME/tls.new.XXXXXX")
  pass=$(random_secret)
  # keytool prints the certificates' details; the log keeps them for when something goes wrong.
  if ! (
    set -e
    cd "$tmp"
    kt() { keytool -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC -storetype PKCS12 -storepass "$pass" "$@"; }
    kt -genkeypair -alias ca -keystore ca.p12 -keyalg EC -groupname secp256r1 -validity 3650 \
      -dname "CN=chatstats local CA" -ext bc:c=ca:true,pathlen:0 -ext ku:c=keyCertSign,cRLSign
    kt -exportcert -alias ca -keystore ca.p12 -rfc -file ca.pem
    kt -genkeypair -alias broker -keystore broker.p12 -keyalg EC -groupname secp256r1 -validity 3650 \
      -dname "CN=localhost" -ext "$san"
    kt -certreq -alias broker -keystore broker.p12 -file broker.csr
    kt -gencert -alias ca -keystore ca.p12 -infile broker.csr -outfile broker.pem -rfc -validity 3650 \
      -ext "$san" -ext ku:c=digitalSignature -ext eku=serverAuth
    kt -importcert -alias ca -keystore broker.p12 -file ca.pem -noprompt
    kt -importcert -alias broker -keystore broker.p12 -file broker.pem -noprompt
    kt -delete -alias ca -keystore broker.p12
    rm -f ca.p12 broker.csr broker.pem
    umask 077
    echo "$pass" >store-password
    if [ -s "$dir/scram-password" ]; then cp "$dir/scram-password" .; else random_secret >scram-password; fi
  ) >"$log" 2>&1; then
    rm -rf "$tmp"
    fail "TLS material (keytool)" "$log"
  fi
  rm -rf "$dir"
  mv "$tmp" "$dir"
  chmod 700 "$dir"
  write_client_env
}

write_client_env() {
  local f="$KAFKA_TLS_DIR/client.env"
  (umask 077; cat >"$f.tmp" <<ENV
# chatstats against the local broker's SASL_SSL listener (written by infra/up.sh):
#   set -a; . $f; set +a
KAFKA_BROKERS=127.0.0.1:$KAFKA_SASL_SSL_PORT
KAFKA_SSL=true
KAFKA_SSL_CA_FILE=$KAFKA_TLS_DIR/ca.pem
KAFKA_SASL_MECHANISM=scram-sha-256
KAFKA_SASL_USERNAME=$KAFKA_SASL_USER
KAFKA_SASL_PASSWORD=$(sasl_password)
ENV
  )
  mv "$f.tmp" "$f"
}

# server.properties lines of the SASL_SSL listener (appended to the PLAINTEXT broker's). The
# keystore's checksum is in a comment, so a new keystore counts as a changed configuration.
sasl_ssl_properties() {
  local sp; sp=$(store_password)
  cat <<PROPS
# SASL_SSL on 127.0.0.1:$KAFKA_SASL_SSL_PORT (infra/security.sh); keystore sha1 $(sha1sum "$KAFKA_TLS_DIR/broker.p12" | cut -d' ' -f1)
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$(sasl_password)";
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$sp
listener.name.sasl_ssl.ssl.key.password=$sp
listener.name.sasl_ssl.ssl.client.auth=none
PROPS
}

# StorageTool format arguments that create the SCRAM user in a new data dir.
scram_format_args() {
  local pw; pw=$(sasl_password)
  SCRAM_FORMAT_ARGS=(--add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$pw]"
                     --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$pw]")
}

# Logs in over SASL_SSL with both SCRAM mechanisms. Exit status: 0 both work, 2 authentication
# failed (user missing or another password), 1 anything else (listener down, TLS trouble).
check_sasl_login() {
  ROOT="$ROOT" CA="$KAFKA_TLS_DIR/ca.pem" BROKER="127.0.0.1:$KAFKA_SASL_SSL_PORT" \
  SASL_USER="$KAFKA_SASL_USER" SASL_PASSWORD="$(sasl_password)" node -e '
    const { Kafka, logLevel } = require(require.resolve("kafkajs", { paths: [process.env.ROOT] }));
    const ca = require("fs").readFileSync(process.env.CA, "utf8");
    (async () => {
      for (const mechanism of ["scram-sha-256", "scram-sha-512"]) {
        const admin = new Kafka({ clientId: "infra-sasl-check", brokers: [process.env.BROKER], ssl: { ca: [ca] },
          sasl: { mechanism, username: process.env.SASL_USER, password: process.env.SASL_PASSWORD },
          logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 3000 }).admin();
        try {
          await admin.connect();
          await admin.describeCluster();
        } catch (e) {
          console.log(`${mechanism}: ${e.name}: ${e.message}`);
          process.exit(e.name === "KafkaJSSASLAuthenticationError" ? 2 : 1);
        } finally {
          await admin.disconnect().catch(() => {});
        }
      }
      process.exit(0);
    })();'
}

# Makes sure the SASL user can log in with SCRAM on the listener; sets its credentials through the
# admin API (on the PLAINTEXT listener) when it cannot. Idempotent: a user that can log in is left
# alone.
ensure_sasl_user() {
  local log="$KAFKA_HOME/logs/sasl-user.log" out rc=1 deadline
  deadline=$(( $(date +%s) + 20 ))
  # The listener opens with the broker; give it a moment if the broker just started.
  while :; do
    out=$(check_sasl_login 2>&1) && rc=0 || rc=$?
    if [ $rc -ne 1 ] || [ "$(date +%s)" -ge "$deadline" ]; then break; fi
    sleep 0.5
  done
  [ $rc -eq 0 ] && return
  if [ $rc -eq 1 ]; then echo "$out" >"$log"; fail "Kafka SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_SSL_PORT" "$log"; fi
  echo "infra:up: setting SCRAM credentials for user $KAFKA_SASL_USER (the cluster has none, or for another password)"
  local pw mechanism; pw=$(sasl_password)
  : >"$log"
  # One mechanism per request: the broker refuses to alter a user's credentials twice in one.
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    java -Xmx256m -Dlog4j2.configurationFile="$INFRA_SRC/log4j2.properties" -Dkafka.logs.dir="$KAFKA_HOME/logs/tools" \
      -cp "$KAFKA_HOME/libs/*" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
      --alter --entity-type users --entity-name "$KAFKA_SASL_USER" --add-config "$mechanism=[password=$pw]" >>"$log" 2>&1 \
      || fail "SCRAM user $KAFKA_SASL_USER ($mechanism via kafka.admin.ConfigCommand)" "$log"
  done
  deadline=$(( $(date +%s) + 20 ))
  until out=$(check_sasl_login 2>&1); do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "$out" >>"$log"; fail "SCRAM login as $KAFKA_SASL_USER after adding the credentials" "$log"; fi
    sleep 0.5
  done
}
