using UsageBilling.Storage;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using UsageBilling.Web.Tests.Infrastructure;

namespace UsageBilling.Web.Tests;

/// <summary>Meters are process-wide: this collection runs alone, so the scraped values are this app's only.</summary>
[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary>With <c>Telemetry:Prometheus=true</c> the app serves UsageBilling's instruments at <c>/metrics</c>, under the names the Grafana dashboard (docs/grafana-dashboard.json) queries.</summary>
[Collection(nameof(TelemetryCollection))]
public sealed partial class TelemetryTests(TelemetryTests.App app) : IClassFixture<TelemetryTests.App>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Prometheus_Enabled_ServesTheFlushInstrumentsAfterAFlush()
    {
        var (session, _) = await app.SignUpAsync();
        using var _s = session;
        await session.ChoosePlanAsync("starter");
        await session.SendMessageAsync("one");
        await session.SendMessageAsync("two");
        var result = await app.Services.GetRequiredService<IUsageFlusher>().FlushOnceAsync(Ct);
        Assert.Equal(1, result.ReportsSent);

        using var client = app.CreateClient();
        var response = await client.GetAsync("/metrics", Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync(Ct);

        Assert.Equal(1, Value(text, "usagebilling_flush_reports_sent_total"));
        Assert.Equal(0, Value(text, "usagebilling_flush_reports_retried_total"));
        Assert.Equal(0, Value(text, "usagebilling_flush_reports_dead_total"));
        Assert.Equal(2, Value(text, "usagebilling_flush_events_claimed_total"));
        Assert.Equal(1, Value(text, "usagebilling_stripe_call_duration_seconds_count"));
        Assert.Equal(0, Value(text, "usagebilling_flush_pending_events"));
        Assert.Equal(0, Value(text, "usagebilling_flush_oldest_pending_age_seconds"));
        Assert.Contains("usagebilling_record_batch_size_bucket{", text, StringComparison.Ordinal);

        // Second-scale buckets for Stripe calls (the SDK's defaults would put every call below 5 s).
        Assert.Matches(new Regex("^usagebilling_stripe_call_duration_seconds_bucket\\{[^}]*le=\"0.25\"\\} ", RegexOptions.Multiline), text);

        // Every series the Grafana dashboard queries is one the app serves.
        var dashboard = await File.ReadAllTextAsync(Path.Combine(RepositoryRoot(), "docs", "grafana-dashboard.json"), Ct);
        var queried = MetricName().Matches(dashboard).Select(m => m.Value).Distinct().ToList();
        Assert.True(queried.Count >= 8, $"The dashboard queries only [{string.Join(", ", queried)}]");
        Assert.All(queried, name => Assert.Matches(new Regex($"^{name}(\\{{| )", RegexOptions.Multiline), text));
    }

    [Fact]
    public async Task Prometheus_Disabled_HasNoScrapeEndpoint()
    {
        await using var plain = new SqliteWebApp();
        await plain.InitializeAsync();
        using var client = plain.CreateClient();
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/metrics", Ct)).StatusCode);
    }

    [Fact]
    public async Task OtlpEndpoint_NotAnAbsoluteUrl_FailsTheStartNamingTheSetting()
    {
        await using var bad = new BadOtlpApp();
        var error = await Assert.ThrowsAnyAsync<Exception>(async () => await bad.InitializeAsync());
        Assert.Contains("Telemetry:OtlpEndpoint must be an absolute http(s) URL", error.ToString(), StringComparison.Ordinal);
    }

    [GeneratedRegex("usagebilling_[a-z_]+")]
    private static partial Regex MetricName();

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "UsageBilling.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("UsageBilling.slnx not found above the test binaries.");
    }

    private static double Value(string exposition, string name)
    {
        // "name{labels} value [timestamp]", one series per name here (one meter, no attributes).
        var matches = Regex.Matches(exposition, $"^{Regex.Escape(name)}(?:{{[^}}]*}})? (\\S+)", RegexOptions.Multiline);
        Assert.True(matches.Count == 1, $"Expected one series {name}, found {matches.Count} in:\n{exposition}");
        return double.Parse(matches[0].Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private sealed class BadOtlpApp() : WebApp(Provider.Sqlite)
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.UseSetting("Telemetry:OtlpEndpoint", "collector:4317");
        }
    }

    public sealed class App() : WebApp(Provider.Sqlite)
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.UseSetting("Telemetry:Prometheus", "true");
        }
    }
}
