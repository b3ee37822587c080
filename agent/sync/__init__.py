"""The agent's cloud sync layer: everything between the control thread and AWS IoT (or any MQTT broker).

start_sync (client.py) -> CloudSync{uplink, stop}
  loop.py         the sync thread: all work below runs on it, library callbacks only post to it
  config.py       the `cloud:` section of agent.yaml -> CloudConfig
  transport.py    the publish/subscribe interface with token buckets; its two implementations
  awsiot_transport.py, paho_transport.py
  spool.py        SQLite disk spool: every QoS 1 message until PUBACK, bounded, drop-oldest counted
  publisher.py    agent.ports.Uplink: telemetry/events via the spool, features live; never raw audio
  shadow.py       Device Shadow client: named shadows `config` and `coefficients`
  shadow_rules.py the shadow limits and the parsing of inbound documents
  coefficients.py coefficient sets in the shadow: float16/zlib/base64, checksum, validation
  loadtest.py     N simulated agents against one broker + shadow service
"""
