// Command cert-manager-cainjector copies a CA certificate into the caBundle of the objects that ask
// for it through the cert-manager.io/inject-ca-from (or inject-ca-from-secret) annotation, using the
// reconcilers of github.com/cert-manager/cert-manager/pkg/controller/cainjector. The module ships no
// main package for it (see ../controller/main.go); scripts/build-cert-manager.sh builds this one.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	var (
		namespace = flag.String("namespace", "", "only inject into objects of this namespace (default: all)")
		kinds     = flag.String("kinds", "apiservice,validatingwebhookconfiguration,mutatingwebhookconfiguration,customresourcedefinition",
			"comma-separated injectable kinds to reconcile")
		version = flag.Bool("version", false, "print the version and exit")
	)
	klog.InitFlags(nil)
	flag.Parse()
	if *version {
		fmt.Println(util.AppVersion, util.AppGitCommit)
		return
	}
	ctrl.SetLogger(klog.Background())
	if err := run(*namespace, *kinds); err != nil {
		klog.ErrorS(err, "cainjector failed")
		os.Exit(1)
	}
}

func run(namespace, kinds string) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmapi.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg = util.RestConfigWithUserAgent(cfg, "cainjector")
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The reconcilers watch Secrets metadata-only and read the one they need directly.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	enabled := map[string]bool{}
	for _, k := range strings.Split(kinds, ",") {
		switch k = strings.TrimSpace(k); k {
		case cainjector.APIServiceName, cainjector.MutatingWebhookConfigurationName,
			cainjector.ValidatingWebhookConfigurationName, cainjector.CustomResourceDefinitionName:
			enabled[k] = true
		default:
			return fmt.Errorf("unknown injectable kind %q", k)
		}
	}
	ctx := ctrl.SetupSignalHandler()
	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		Namespace:                    namespace,
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor:        enabled,
	}); err != nil {
		return fmt.Errorf("registering injectors: %w", err)
	}
	klog.InfoS("starting cainjector", "kinds", kinds, "version", util.AppVersion)
	return mgr.Start(ctx)
}
