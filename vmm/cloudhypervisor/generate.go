package cloudhypervisor

// client.gen.go is generated from cloud-hypervisor.yaml by oapi-codegen
// v2.8.2, which go.mod pins as a tool. After editing the document, run
//
//	go generate ./vmm/cloudhypervisor
//
// and commit both files.
//go:generate go tool oapi-codegen -config oapi-codegen.yaml cloud-hypervisor.yaml
