; zone example.com: rendered from labkit/topology.yaml, do not edit
$TTL 300
@ IN SOA ns.example.net. hostmaster.example.com. ( 1 3600 600 86400 300 )
@ IN NS ns.example.net.
relay.example.com. IN A 192.168.56.20
relay-in.example.com. IN A 192.168.57.20
mx2.example.com. IN A 192.168.56.21
mx2-in.example.com. IN A 192.168.57.21
server.example.com. IN A 192.168.57.30
client.example.com. IN A 192.168.57.40
listed.example.com. IN A 192.168.57.41
@ IN MX 10 relay.example.com.
@ IN MX 20 mx2.example.com.
