using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using UsageBilling.Web.Billing;
using UsageBilling.Web.Tests.Infrastructure;

namespace UsageBilling.Web.Tests;

/// <summary>A receiver on 127.0.0.1 that records what it is sent; the first <see cref="FailFirst"/> posts get a 500.</summary>
public sealed class AlertReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _seen;

    private AlertReceiver(WebApplication app) => _app = app;

    public ConcurrentQueue<(string Body, string Signature, string AlertId)> Received { get; } = new();

    public int FailFirst { get; set; }

    public Uri Url { get; private set; } = null!;

    public static async Task<AlertReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var receiver = new AlertReceiver(app);
        app.MapPost("/alerts", async (HttpRequest request) =>
        {
            using var reader = new StreamReader(request.Body);
            var body = await reader.ReadToEndAsync();
            if (Interlocked.Increment(ref receiver._seen) <= receiver.FailFirst)
            {
                return Results.StatusCode(500);
            }

            receiver.Received.Enqueue((body, request.Headers[AlertWebhookSender.SignatureHeader].ToString(), request.Headers["UsageBilling-Alert-Id"].ToString()));
            return Results.Ok();
        });
        await app.StartAsync();
        receiver.Url = new Uri(new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()), "/alerts");
        return receiver;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}

/// <summary>The sample posts each usage alert, signed, to <c>App:AlertWebhook:Url</c>.</summary>
public sealed class AlertWebhookWebApp() : WebApp(Provider.Sqlite)
{
    public const string Secret = "alert-webhook-secret-123";

    public AlertReceiver Receiver { get; private set; } = null!;

    public override async ValueTask InitializeAsync()
    {
        Receiver = await AlertReceiver.StartAsync();
        await base.InitializeAsync();
    }

    protected override void ConfigureSettings(IWebHostBuilder builder)
    {
        builder.UseSetting("App:AlertWebhook:Url", Receiver.Url.ToString());
        builder.UseSetting("App:AlertWebhook:Secret", Secret);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        await Receiver.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

public sealed class AlertWebhookTests(AlertWebhookWebApp app) : IClassFixture<AlertWebhookWebApp>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Alerts_PostedSignedToTheConfiguredUrl_RetriedAfterAFailure_OncePerAlertId()
    {
        app.Receiver.FailFirst = 1;
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("tiny");

        // 5 included: the 4th message crosses 80 % of the allowance, the 5th 100 %.
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = $"m{i}", requestId = Guid.NewGuid().ToString("N") }, Ct)).StatusCode);
        }

        var dispatcher = app.Services.GetRequiredService<IUsageAlertDispatcher>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (app.Receiver.Received.Count < 2 && DateTime.UtcNow < deadline)
        {
            await dispatcher.DeliverOnceAsync(Ct);
            await Task.Delay(200, Ct);
        }

        var received = app.Receiver.Received.ToList();
        Assert.True(received.Count >= 2, $"received {received.Count} alerts");
        foreach (var (body, signature, alertId) in received)
        {
            var timestamp = long.Parse(signature.Split(',')[0]["t=".Length..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(AlertWebhookSender.Sign(body, AlertWebhookWebApp.Secret, timestamp), signature);
            var json = JsonNode.Parse(body)!;
            Assert.Equal(alertId, json["id"]!.GetValue<string>());
            Assert.Equal("usage.alert", json["type"]!.GetValue<string>());
            Assert.Equal(userId, json["data"]!["user_id"]!.GetValue<Guid>());
            Assert.Equal("ai_messages", json["data"]!["meter"]!.GetValue<string>());
        }

        Assert.Equal(received.Count, received.Select(r => r.AlertId).Distinct().Count());
    }
}
