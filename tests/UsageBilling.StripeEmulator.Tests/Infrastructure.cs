using System.Net;
using System.Net.Http.Headers;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Stripe;
using Stripe.Billing;

namespace UsageBilling.StripeEmulator.Tests;

internal static class Emu
{
    public const string Key = "sk_test_emulator";

    /// <summary>A fixed, minute-aligned start so period arithmetic in tests is exact.</summary>
    public static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<(StripeEmulatorServer Server, FakeTimeProvider Time)> StartAsync(Action<StripeEmulatorOptions>? configure = null)
    {
        var time = new FakeTimeProvider(T0);
        var options = new StripeEmulatorOptions { TimeProvider = time };
        configure?.Invoke(options);
        return (await StripeEmulatorServer.StartAsync(options, Ct), time);
    }

    public static StripeClient Client(StripeEmulatorServer server, int retries = 0, string key = Key) =>
        new(new StripeClientOptions
        {
            ApiKey = key,
            ApiBase = server.ApiBase,
            MeterEventsBase = server.ApiBase,
            HttpClient = new SystemNetHttpClient(new HttpClient { Timeout = TimeSpan.FromSeconds(20) }, retries),
        });

    public static HttpClient Raw(StripeEmulatorServer server, bool auth = true)
    {
        var http = new HttpClient { BaseAddress = server.BaseUrl };
        if (auth)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        }

        return http;
    }

    public static FormUrlEncodedContent Form(params (string Key, string Value)[] pairs) =>
        new(pairs.Select(p => new KeyValuePair<string, string>(p.Key, p.Value)));

    /// <summary>Waits until every injected fault was taken by a request, then a little more so that request is inside its handler.</summary>
    public static async Task InFlightAsync(StripeEmulatorServer server)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await server.Admin.GetFaultsAsync(Ct)).Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "The delayed request never arrived.");
            await Task.Delay(10, Ct);
        }

        await Task.Delay(100, Ct);
    }

    public static Task<Meter> MeterAsync(StripeClient c, string eventName = "ai_messages", string formula = "sum", string? window = null) =>
        c.V1.Billing.Meters.CreateAsync(
            new MeterCreateOptions
            {
                DisplayName = "AI messages",
                EventName = eventName,
                DefaultAggregation = new MeterDefaultAggregationOptions { Formula = formula },
                EventTimeWindow = window,
            },
            cancellationToken: Ct);

    public static Task<Customer> CustomerAsync(StripeClient c, string email = "ada@example.com") =>
        c.V1.Customers.CreateAsync(new CustomerCreateOptions { Email = email }, cancellationToken: Ct);

    public static Task<MeterEvent> UsageAsync(StripeClient c, string customer, long value, string eventName = "ai_messages", string? identifier = null, DateTimeOffset? at = null, RequestOptions? ro = null) =>
        c.V1.Billing.MeterEvents.CreateAsync(
            new MeterEventCreateOptions
            {
                EventName = eventName,
                Identifier = identifier,
                Timestamp = at?.UtcDateTime,
                Payload = new Dictionary<string, string> { ["stripe_customer_id"] = customer, ["value"] = value.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            },
            ro,
            Ct);
}

/// <summary>A loopback HTTP endpoint that records every webhook POST.</summary>
internal sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Channel<Received> _channel = Channel.CreateUnbounded<Received>();
    private readonly List<Received> _all = [];

    public sealed record Received(string Body, string Signature);

    private WebhookReceiver(WebApplication app) => _app = app;

    public Uri Url { get; private set; } = null!;

    /// <summary>Answer this status to deliveries (to test retries).</summary>
    public int Status { get; set; } = 200;

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        app.MapPost("/hook", async (HttpContext ctx) =>
        {
            using var reader = new StreamReader(ctx.Request.Body);
            var body = await reader.ReadToEndAsync();
            receiver._channel.Writer.TryWrite(new Received(body, ctx.Request.Headers["Stripe-Signature"].ToString()));
            return Results.StatusCode(receiver.Status);
        });
        await app.StartAsync(Emu.Ct);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        receiver.Url = new Uri(address + "/hook");
        return receiver;
    }

    /// <summary>Waits until a delivery satisfying <paramref name="match"/> arrives (or was already seen).</summary>
    public async Task<Received> WaitForAsync(Func<Received, bool> match, int timeoutMs = 10_000)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Emu.Ct);
        cts.CancelAfter(timeoutMs);
        lock (_all)
        {
            if (_all.FirstOrDefault(match) is { } seen)
            {
                return seen;
            }
        }

        while (true)
        {
            var next = await _channel.Reader.ReadAsync(cts.Token);
            lock (_all)
            {
                _all.Add(next);
            }

            if (match(next))
            {
                return next;
            }
        }
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
