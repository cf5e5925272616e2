using System.Net;
using Stripe;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>The HTTP admin API, driven through <see cref="EmulatorAdminClient"/> as a flusher test in another process would.</summary>
public sealed class AdminApiTests
{
    [Fact]
    public async Task AdminClient_FaultsClockInspectionAndReset_WorkOverHttp()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var admin = new EmulatorAdminClient(http, server.BaseUrl);
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var faultId = await admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.RateLimited, Count: 1, RateLimitedReason: "endpoint-rate"), Emu.Ct);
        Assert.Equal(faultId, Assert.Single(await admin.GetFaultsAsync(Emu.Ct)).Id);
        var limited = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1));
        await Emu.UsageAsync(c, cus.Id, 4, identifier: "a", at: Emu.T0.AddMinutes(1));
        var now = await admin.AdvanceClockAsync(TimeSpan.FromHours(2), Emu.Ct);
        await Emu.UsageAsync(c, cus.Id, 6, identifier: "b");

        Assert.Equal("endpoint-rate", limited.StripeResponse.Headers.GetValues("Stripe-Rate-Limited-Reason").Single());
        Assert.Equal(Emu.T0.AddHours(2), now);
        Assert.Equal(now, await admin.GetNowAsync(Emu.Ct));
        Assert.Equal(4m, await admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddHours(1), Emu.Ct));
        Assert.Equal(10m, await admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddHours(3), Emu.Ct));
        var events = await admin.GetMeterEventsAsync(cus.Id, "ai_messages", Emu.Ct);
        Assert.Equal([("a", 4L, Emu.T0.AddMinutes(1)), ("b", 6L, Emu.T0.AddHours(2))], events.Select(e => (e.Identifier, e.Value, e.Timestamp)));
        Assert.Equal(1, (await admin.GetRejectionCountsAsync(Emu.Ct))["injected_rate_limit"]);

        await admin.SetClockAsync(Emu.T0.AddDays(1), Emu.Ct);
        Assert.Equal(Emu.T0.AddDays(1), await admin.GetNowAsync(Emu.Ct));

        await admin.ResetAsync(Emu.Ct);
        Assert.Empty(await admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
        Assert.Empty(await admin.GetRejectionCountsAsync(Emu.Ct));
        var gone = await Assert.ThrowsAsync<StripeException>(() => c.V1.Customers.GetAsync(cus.Id, cancellationToken: Emu.Ct));
        Assert.Equal(HttpStatusCode.NotFound, gone.HttpStatusCode);
    }

    [Fact]
    public async Task AdminClient_RateLimitConcurrencyWebhooksAndClearFaults()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var admin = new EmulatorAdminClient(http, server.BaseUrl);
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        await admin.SetRateLimitAsync(2, Emu.Ct);
        await Emu.UsageAsync(c, cus.Id, 1);
        await Emu.UsageAsync(c, cus.Id, 1);
        var limited = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1));
        await admin.SetRateLimitAsync(null, Emu.Ct);
        await admin.SetConcurrencyEnforcementAsync(true, Emu.Ct);
        await admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.Delay, DelayMilliseconds: 1000), Emu.Ct);
        var slow = Emu.UsageAsync(c, cus.Id, 1);
        await Emu.InFlightAsync(server);
        var concurrent = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1));
        await slow;
        await admin.InjectFaultAsync(new FaultSpec("/v1/customers", FaultKind.ServerError, Count: 5), Emu.Ct);
        await admin.ClearFaultsAsync(Emu.Ct);
        await Emu.CustomerAsync(c);
        var hook = await admin.AddWebhookEndpointAsync(new Uri("http://127.0.0.1:9/hook"), null, Emu.Ct);

        Assert.Equal((HttpStatusCode)429, limited.HttpStatusCode);
        Assert.Equal((HttpStatusCode)429, concurrent.HttpStatusCode);
        var rejections = await admin.GetRejectionCountsAsync(Emu.Ct);
        Assert.Equal((1L, 1L), (rejections["rate_limited"], rejections["concurrency"]));
        Assert.StartsWith("whsec_", hook.Secret, StringComparison.Ordinal);
        Assert.Equal(["*"], hook.EnabledEvents);
        Assert.Empty(await admin.GetWebhookDeliveriesAsync(Emu.Ct));
    }

    [Fact]
    public async Task AdminHttp_BadInput_Returns400ProblemNot500()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var admin = new EmulatorAdminClient(http, server.BaseUrl);

        var badFault = await Assert.ThrowsAsync<HttpRequestException>(() => admin.InjectFaultAsync(new FaultSpec("no-slash", FaultKind.ServerError), Emu.Ct));
        var backwards = await Assert.ThrowsAsync<HttpRequestException>(() => admin.AdvanceClockAsync(TimeSpan.FromSeconds(-5), Emu.Ct));
        using var missing = await http.GetAsync(new Uri(server.BaseUrl, "/_emulator/totals?customer=cus_1"), Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, badFault.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, backwards.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
    }
}

public sealed class PersistenceTests
{
    [Fact]
    public async Task StateFile_SavedOnDispose_LoadedOnStart()
    {
        var file = Path.Combine(Path.GetTempPath(), $"stripe-emulator-{Guid.NewGuid():N}.json");
        try
        {
            string customer;
            string meterId;
            var (first, time) = await Emu.StartAsync(o => o.StateFilePath = file);
            await using (first)
            {
                var c = Emu.Client(first);
                meterId = (await Emu.MeterAsync(c)).Id;
                customer = (await Emu.CustomerAsync(c)).Id;
                await Emu.UsageAsync(c, customer, 9, identifier: "persisted");
                time.Advance(TimeSpan.FromMinutes(1));
            }

            Assert.True(System.IO.File.Exists(file));
            var second = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions { TimeProvider = time, StateFilePath = file }, Emu.Ct);
            await using (second)
            {
                var c = Emu.Client(second);
                var dup = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, customer, 9, identifier: "persisted"));

                Assert.Equal(meterId, (await c.V1.Billing.Meters.GetAsync(meterId, cancellationToken: Emu.Ct)).Id);
                Assert.Equal(9m, await second.Admin.GetMeterTotalAsync(customer, meterId, Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
                Assert.Equal("An event already exists with identifier persisted.", dup.StripeError.Message);
            }
        }
        finally
        {
            System.IO.File.Delete(file);
        }
    }

    [Fact]
    public async Task AdminApi_CrossOriginBrowserPost_Refused403_SameOriginAndNonBrowserAllowed()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var reset = new Uri(server.BaseUrl, "/_emulator/reset");

        // A page on another port posting text/plain (a "simple" request: no preflight) to reset the emulator.
        using var attack = new HttpRequestMessage(HttpMethod.Post, reset) { Content = new StringContent("x") };
        attack.Headers.Add("Origin", "http://127.0.0.1:1");
        using var fetch = new HttpRequestMessage(HttpMethod.Post, reset) { Content = new StringContent("x") };
        fetch.Headers.Add("Sec-Fetch-Site", "cross-site");
        using var own = new HttpRequestMessage(HttpMethod.Post, reset);
        own.Headers.Add("Origin", server.BaseUrl.GetLeftPart(UriPartial.Authority));

        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(attack, Emu.Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(fetch, Emu.Ct)).StatusCode);
        Assert.True((await http.SendAsync(own, Emu.Ct)).IsSuccessStatusCode);
        Assert.True((await http.PostAsync(reset, null, Emu.Ct)).IsSuccessStatusCode);
    }
}
