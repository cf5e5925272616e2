using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace UsageBilling.Tests;

public class FlushOptionsTests
{
    private static IOptions<StripeOptions> Stripe() => Options.Create(new StripeOptions { SecretKey = "sk_test_x" });

    [Theory]
    [InlineData("V1", FlushTransport.V1)]
    [InlineData("V2Stream", FlushTransport.V2Stream)]
    [InlineData("v2stream", FlushTransport.V2Stream)]
    public void Transport_BoundFromConfiguration_ValidatesAndNamesTheTransport(string value, FlushTransport expected)
    {
        var section = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["UsageBilling:Flush:Transport"] = value }).Build().GetSection("UsageBilling:Flush");
        var options = section.Get<FlushOptions>()!;

        Assert.Equal(expected, options.Transport);
        Assert.True(new FlushOptionsValidator(Stripe()).Validate(null, options).Succeeded);
    }

    [Fact]
    public void Transport_Default_IsV1() => Assert.Equal(FlushTransport.V1, new FlushOptions().Transport);

    [Fact]
    public void Transport_UndefinedValue_FailsNamingTheChoices()
    {
        var result = new FlushOptionsValidator(Stripe()).Validate(null, new FlushOptions { Transport = (FlushTransport)7 });

        Assert.False(result.Succeeded);
        Assert.Contains(result.Failures!, f => f.Contains("UsageBilling:Flush:Transport must be V1 or V2Stream", StringComparison.Ordinal));
    }
}
