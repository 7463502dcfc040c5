// A private aedes broker for make interop: node server.mjs PORT
// Listens on 127.0.0.1:PORT, prints "listening PORT" once it accepts,
// logs client connects/disconnects and errors on stdout, and exits on
// SIGTERM/SIGINT or when its stdin closes (the test process died).
import net from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs PORT')
  process.exit(2)
}

const broker = await Aedes.createBroker()
const server = net.createServer(broker.handle)

broker.on('client', (c) => console.log('client connected', c.id))
broker.on('clientDisconnect', (c) => console.log('client disconnected', c.id))
broker.on('clientError', (c, err) => console.log('client error', c && c.id, err.message))
broker.on('connectionError', (c, err) => console.log('connection error', c && c.id, err.message))

function quit () {
  server.close()
  broker.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}
process.on('SIGTERM', quit)
process.on('SIGINT', quit)
process.stdin.on('end', quit)
process.stdin.resume()

server.listen(port, '127.0.0.1', () => console.log('listening', port))
