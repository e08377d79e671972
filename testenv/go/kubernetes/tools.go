//go:build tools

// Package tools pins the Kubernetes commands that testenv/build.sh compiles from the
// k8s.io/kubernetes module; nothing here is compiled into a binary of its own.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
