// Command cert-manager-controller runs the cert-manager controllers hpa-kit's cert-manager overlay
// needs (SelfSigned and CA issuers, Certificates, CertificateRequests), built on the packages of
// the github.com/cert-manager/cert-manager module. The module publishes no main package for its
// binaries (they live in unpublished nested modules), so scripts/build-cert-manager.sh builds this
// file against the pinned module instead. Only the selfSigned and ca issuer kinds are compiled in:
// no ACME, Vault or Venafi, no DNS providers, no ingress/gateway shims.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	var (
		kubeconfig      = flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster config)")
		namespace       = flag.String("namespace", "", "only watch this namespace (default: all)")
		clusterResNS    = flag.String("cluster-resource-namespace", envOr("POD_NAMESPACE", "cert-manager"), "namespace of ClusterIssuer secrets")
		workers         = flag.Int("workers", 2, "workers per controller")
		version         = flag.Bool("version", false, "print the version and exit")
		controllersFlag = flag.String("controllers", "", "comma-separated controllers to run (default: every one compiled in)")
	)
	klog.InitFlags(nil)
	flag.Parse()
	if *version {
		fmt.Println(util.AppVersion, util.AppGitCommit)
		return
	}
	logf.InitLogs()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, klog.Background(), "cert-manager")
	if err := run(ctx, *kubeconfig, *namespace, *clusterResNS, *workers, *controllersFlag); err != nil {
		klog.ErrorS(err, "cert-manager controller failed")
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, kubeconfig, namespace, clusterResNS string, workers int, only string) error {
	opts := controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		Namespace:          namespace,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: clusterResNS},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	}
	factory, err := controllerpkg.NewContextFactory(ctx, opts)
	if err != nil {
		return err
	}
	known := controllerpkg.Known()
	names := make([]string, 0, len(known))
	if only != "" {
		for _, n := range strings.Split(only, ",") {
			if _, ok := known[n]; !ok {
				return fmt.Errorf("unknown controller %q (compiled in: %v)", n, keys(known))
			}
			names = append(names, n)
		}
	} else {
		names = keys(known)
	}
	type runner struct {
		name string
		ctl  controllerpkg.Interface
	}
	var runners []runner
	for _, n := range names {
		ctl, err := known[n](factory)
		if err != nil {
			return fmt.Errorf("constructing controller %s: %w", n, err)
		}
		runners = append(runners, runner{n, ctl})
	}
	// The controllers asked the shared informer factories for their informers; start them all.
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	if shared.GatewaySolverEnabled {
		shared.GWShared.Start(ctx.Done())
	}
	klog.InfoS("starting controllers", "controllers", names, "version", util.AppVersion)
	var wg sync.WaitGroup
	errs := make(chan error, len(runners))
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.ctl.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", r.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
