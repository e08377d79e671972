// Command etcd runs the etcd server from the go.etcd.io/etcd/server/v3 module.
// The upstream etcd main lives in a module with local replace directives, which cannot be
// built with `go install mod@version`; this wrapper calls the same entry point instead.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
