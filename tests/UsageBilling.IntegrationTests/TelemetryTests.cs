using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// Instruments are process-wide: other test classes' hosts publish their own <c>UsageBilling</c> meters, so this
/// collection runs alone and the exported values are exactly this test's.
/// </summary>
[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary><c>AddUsageBillingInstrumentation()</c> exports the library's real instruments and spans (in-memory exporter).</summary>
[Collection(nameof(TelemetryCollection))]
public sealed class TelemetryTests() : FlushComplianceTestsBase(Provider.Sqlite)
{
    [Fact]
    public async Task AddUsageBillingInstrumentation_ExportsTheFlushAndRecordingInstrumentsAndTheFlushSpan()
    {
        var metrics = new List<Metric>();
        var spans = new List<Activity>();
        using var meterProvider = Sdk.CreateMeterProviderBuilder().AddUsageBillingInstrumentation().AddInMemoryExporter(metrics).Build();
        using var tracerProvider = Sdk.CreateTracerProviderBuilder().AddUsageBillingInstrumentation().AddInMemoryExporter(spans).Build();

        // One report sent after one transient failure, one report dead (its event fell out of Stripe's window).
        var (user, _) = await NewCustomerAsync();
        await Recorder.RecordAsync(user, "ai_messages", 3, "fresh", Now.AddMinutes(-5), Ct);
        await Recorder.RecordAsync(user, "api_calls", 1, "old", Now.AddDays(-35).AddMinutes(30), Ct);
        await Emulator.Admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.ServerError), Ct);
        await FlushUntilDoneAsync();

        meterProvider.ForceFlush();
        tracerProvider.ForceFlush();
        long Sum(string name) => Points(metrics, name).Sum(p => p.GetSumLong());
        Assert.Equal(1, Sum("usagebilling.flush.reports_sent"));
        Assert.Equal(1, Sum("usagebilling.flush.reports_retried"));
        Assert.Equal(1, Sum("usagebilling.flush.reports_dead"));
        Assert.Equal(2, Sum("usagebilling.flush.events_claimed"));
        Assert.Equal(2, Points(metrics, "usagebilling.stripe.call_duration").Sum(p => p.GetHistogramCount()));

        // Seconds-scale buckets from the library itself (no view configured here): 5 ms to Stripe's 80 s timeout.
        var bounds = new List<double>();
        foreach (var bucket in Points(metrics, "usagebilling.stripe.call_duration")[0].GetHistogramBuckets())
        {
            bounds.Add(bucket.ExplicitBound);
        }

        Assert.Equal(0.005, bounds[0]);
        Assert.Contains(0.25, bounds);
        Assert.Contains(80, bounds);
        Assert.True(Points(metrics, "usagebilling.record.batch_size").Sum(p => p.GetHistogramSum()) == 2, "two events recorded");
        Assert.Equal(0, Points(metrics, "usagebilling.flush.pending_events").Last().GetGaugeLastValueLong());
        Assert.Equal(0, Points(metrics, "usagebilling.flush.oldest_pending_age").Last().GetGaugeLastValueDouble());
        Assert.Contains(spans, s => s.OperationName == "usagebilling.flush" && s.Source.Name == UsageBillingMetrics.Name);
    }

    private static List<MetricPoint> Points(List<Metric> metrics, string name)
    {
        // The in-memory exporter keeps every export; the latest one of an instrument holds its cumulative values.
        var metric = metrics.LastOrDefault(m => m.Name == name);
        Assert.True(metric is not null, $"{name} was not exported; exported: {string.Join(", ", metrics.Select(m => m.Name).Distinct())}");
        Assert.Equal(UsageBillingMetrics.Name, metric.MeterName);
        var points = new List<MetricPoint>();
        foreach (ref readonly var point in metric.GetMetricPoints())
        {
            points.Add(point);
        }

        return points;
    }
}
