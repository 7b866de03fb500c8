#!/bin/sh
# Runs a Hive Metastore 2.3 (Derby in DIR) on port 9083 of the current network namespace.
# It listens on every address, so scripts/test.sh starts it under `unshare -n` (a namespace of
# its own) and reaches it through scripts/netns-forward.py.
#
#   unshare -n scripts/hive-metastore.sh DIR JARS_DIR
set -eu
DIR="$1"
JARS="$2"
mkdir -p "$DIR/warehouse"
ip link set lo up
cd "$DIR"
exec java -Xmx512m \
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED \
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
  --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED \
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED \
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
  --add-opens=java.base/sun.nio.cs=ALL-UNNAMED --add-opens=java.base/sun.security.action=ALL-UNNAMED \
  --add-opens=java.base/sun.util.calendar=ALL-UNNAMED \
  -cp "$JARS/*" org.apache.hadoop.hive.metastore.HiveMetaStore -p 9083 \
  --hiveconf "javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName=$DIR/metastore_db;create=true" \
  --hiveconf datanucleus.schema.autoCreateAll=true \
  --hiveconf hive.metastore.schema.verification=false \
  --hiveconf hive.async.log.enabled=false \
  --hiveconf "hive.metastore.warehouse.dir=file://$DIR/warehouse"
