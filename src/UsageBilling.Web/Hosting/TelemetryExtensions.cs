using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace UsageBilling.Web.Hosting;

/// <summary>Where the app sends its telemetry, bound from the <c>Telemetry</c> section. Everything is off by default.</summary>
internal sealed class TelemetryOptions
{
    public const string SectionName = "Telemetry";

    /// <summary>An OTLP collector's base address, e.g. <c>http://127.0.0.1:4317</c> (gRPC) or <c>http://127.0.0.1:4318</c> with <see cref="OtlpProtocol"/> <c>HttpProtobuf</c> (the signal paths <c>/v1/metrics</c> and <c>/v1/traces</c> are added). The standard <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> variable works too.</summary>
    public Uri? OtlpEndpoint { get; set; }

    /// <summary>The OTLP transport. Default gRPC.</summary>
    public OtlpExportProtocol OtlpProtocol { get; set; } = OtlpExportProtocol.Grpc;

    /// <summary>Write metrics and spans to the console. Default off.</summary>
    public bool Console { get; set; }

    /// <summary>Serve metrics for Prometheus to scrape at <see cref="PrometheusPath"/>. Default off.</summary>
    public bool Prometheus { get; set; }

    /// <summary>The scrape path. Default <c>/metrics</c>.</summary>
    public string PrometheusPath { get; set; } = "/metrics";
}

/// <summary>OpenTelemetry for the app: UsageBilling's instruments and spans plus ASP.NET Core's and HttpClient's, to the configured exporters.</summary>
internal static class TelemetryExtensions
{
    // Built into ASP.NET Core and System.Net.Http: requests, Kestrel and the outgoing Stripe calls, with no instrumentation package.
    private static readonly string[] FrameworkMeters = ["Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel", "System.Net.Http"];
    private static readonly string[] FrameworkSources = ["Microsoft.AspNetCore", "System.Net.Http"];

    /// <summary>Adds the OpenTelemetry pipeline when <c>Telemetry</c> (or <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>) names an exporter; otherwise nothing.</summary>
    public static void AddTelemetry(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection(TelemetryOptions.SectionName).Get<TelemetryOptions>() ?? new TelemetryOptions();
        if (options.OtlpEndpoint is { } configured && (!configured.IsAbsoluteUri || (configured.Scheme != Uri.UriSchemeHttp && configured.Scheme != Uri.UriSchemeHttps)))
        {
            throw new InvalidOperationException($"Telemetry:OtlpEndpoint must be an absolute http(s) URL such as http://127.0.0.1:4317, was '{configured}'.");
        }

        if (!options.PrometheusPath.StartsWith('/'))
        {
            throw new InvalidOperationException($"Telemetry:PrometheusPath must start with '/', was '{options.PrometheusPath}'.");
        }

        builder.Services.AddSingleton(options);
        var otlp = options.OtlpEndpoint is not null || !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        if (!otlp && !options.Console && !options.Prometheus)
        {
            return;
        }

        // A configured endpoint is the collector's base address: over HTTP the exporter posts to exactly the URL it is
        // given, so each signal gets its path (/v1/metrics, /v1/traces); over gRPC the base address is the endpoint.
        Action<OtlpExporterOptions> Otlp(string signalPath) => o =>
        {
            if (options.OtlpEndpoint is { } endpoint)
            {
                o.Protocol = options.OtlpProtocol;
                o.Endpoint = options.OtlpProtocol == OtlpExportProtocol.HttpProtobuf
                    ? new Uri(endpoint.AbsoluteUri.TrimEnd('/') + signalPath)
                    : endpoint;
            }
        };

        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(builder.Environment.ApplicationName))
            .WithMetrics(m =>
            {
                m.AddUsageBillingInstrumentation().AddMeter(FrameworkMeters);
                if (otlp)
                {
                    m.AddOtlpExporter(Otlp("/v1/metrics"));
                }

                if (options.Console)
                {
                    m.AddConsoleExporter();
                }

                if (options.Prometheus)
                {
                    m.AddPrometheusExporter();
                }
            })
            .WithTracing(t =>
            {
                t.AddUsageBillingInstrumentation().AddSource(FrameworkSources);
                if (otlp)
                {
                    t.AddOtlpExporter(Otlp("/v1/traces"));
                }

                if (options.Console)
                {
                    t.AddConsoleExporter();
                }
            });
    }

    /// <summary>Maps the Prometheus scrape endpoint when <c>Telemetry:Prometheus</c> is on.</summary>
    public static void MapTelemetry(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<TelemetryOptions>();
        if (options.Prometheus)
        {
            app.MapPrometheusScrapingEndpoint(options.PrometheusPath);
        }
    }
}
