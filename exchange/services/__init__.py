"""gRPC servicers. Each translates protobuf to domain objects on the way in and back
on the way out; the work itself happens in the domain modules and the store."""
